"""Dynamic batching: requests wait briefly in a bounded queue so one forward pass serves many.

A single worker takes the first waiting request, then gathers more until it has `max_batch` or
`max_wait_ms` has passed, and runs them in a thread (the event loop keeps accepting requests),
resolving each request's future. The wait is spent only when there is concurrent demand (others
already queued, or the last batch held more than one request): a lone client would otherwise pay
max_wait_ms on every request for nothing (measured: 0.63x a naive server at one client). A full
queue refuses at once (the caller answers 429) rather than letting latency grow without bound.

Token budget: a forward pass over texts costs its padded size, rows x longest row, not its row
count. Given each item's `cost` (its tokens), the gathered items are sorted by cost and cut into
passes of at most `max_tokens` padded tokens, shortest first: short texts no longer pad to a long
neighbour's length, many short texts share one pass, and each pass answers its requests as it ends.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable


class QueueFull(Exception):
    """The queue holds max_queue requests already."""


class Batcher:
    """Collects items into batches for `run(items) -> results` (same length, same order)."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int, max_wait_ms: float, max_queue: int,
                 cost: Callable[[Any], int] | None = None, max_tokens: int = 0):
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.cost = cost  # tokens of an item; None: every pass is up to max_batch items in arrival order
        self.max_tokens = max_tokens
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task | None = None
        self._last_size = 0  # the previous batch's size: > 1 means requests are arriving together

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, item: Any, timeout: float) -> Any:
        """The item's result; QueueFull at once if the queue is full, TimeoutError after `timeout` s."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise QueueFull from None
        return await asyncio.wait_for(future, timeout)  # a timeout cancels the future: the worker skips it

    async def _work(self) -> None:
        while True:
            gathered = [(item, future) for item, future in await self._collect() if not future.done()]
            for batch in self.passes(gathered):
                await self._run(batch)

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        live = [(item, future) for item, future in batch if not future.done()]
        if not live:
            return
        try:
            results = await asyncio.to_thread(self.run, [item for item, _ in live])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(live, results):
            if not future.done():
                future.set_result(result)

    def passes(self, gathered: list[tuple[Any, asyncio.Future]]) -> list[list[tuple[Any, asyncio.Future]]]:
        """The gathered requests as forward passes: one pass without a cost function; with one, sorted by
        cost and cut so that rows x longest row stays within max_tokens (a longer item runs alone)."""
        if self.cost is None or len(gathered) < 2:  # a lone request is not tokenized twice
            return [gathered] if gathered else []
        costed = sorted(((self.cost(item), (item, future)) for item, future in gathered), key=lambda c: c[0])
        batches: list[list[tuple[Any, asyncio.Future]]] = [[]]
        for cost, entry in costed:  # ascending, so this item is the longest of its pass
            if batches[-1] and (cost * (len(batches[-1]) + 1) > self.max_tokens or len(batches[-1]) >= self.max_batch):
                batches.append([])
            batches[-1].append(entry)
        return batches

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        concurrent = self._last_size > 1 or not self.queue.empty()
        deadline = loop.time() + (self.max_wait if concurrent else 0.0)
        limit = self._gather_limit()
        while len(batch) < limit and not self.queue.empty():  # whatever is already waiting
            batch.append(self.queue.get_nowait())
        while len(batch) < limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        self._last_size = len(batch)
        return batch

    def _gather_limit(self) -> int:
        """Requests gathered per round: one batch, or with a token budget every waiting request up to a few
        batches' worth, so that sorting by cost has texts of similar length to group."""
        return self.max_batch if self.cost is None else 4 * self.max_batch
