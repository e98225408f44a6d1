"""Run a function over a stream of work items in worker processes, results in input order.

Corpus building and tokenisation are the same shape: many independent items (files, batches of
documents) whose results must be merged in order, so that 1 and N workers give the same output.
`concurrent.futures.ProcessPoolExecutor.map` would submit the whole stream at once (its memory grows
with the corpus); here at most `window` items are in flight, so memory stays bounded however long
the stream is.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from lmforge.errors import LmforgeError

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int = 1, window: int = 0,
                initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> Iterator[R]:
    """`map(function, items)`, computed by `workers` processes (1: in this process), in input order.

    `function` must be a module-level function (it is pickled by name); `initializer(*initargs)` runs
    once per process first (to hand each worker a tokenizer once rather than with every item).
    Workers are spawned, not forked: a fork of a process holding tokenizer or torch threads can deadlock.
    """
    if workers < 1:
        raise LmforgeError(f"workers must be at least 1, not {workers}")
    if workers == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    window = window or 2 * workers
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
                             initargs=initargs) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # an error (or the caller stopping early) cancels what has not started
                future.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items (the last one shorter): the unit of work sent to a worker."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
