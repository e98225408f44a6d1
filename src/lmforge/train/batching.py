"""Batch plans and dynamic padding: no compute spent on padding, same batches on every process.

Batches are planned as lists of example indices, not drawn from a DataLoader, so that the plan is a
pure function of (seed, epoch): resuming mid-epoch and running under several processes both reduce
to slicing the same plan.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MEGABATCH = 50  # batches whose examples are sorted by length together (as HF's group_by_length)


def plan_epoch(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Global batches for one epoch: shuffled, then grouped by length inside mega-batches.

    Examples of similar length share a batch, so padding stays small while batch order stays random.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    lens = np.asarray(lengths)
    batches: list[list[int]] = []
    for start in range(0, len(order), batch_size * MEGABATCH):
        mega = order[start : start + batch_size * MEGABATCH]
        mega = mega[np.argsort(-lens[mega], kind="stable")]
        batches.extend(mega[i : i + batch_size].tolist() for i in range(0, len(mega), batch_size))
    rng.shuffle(batches)
    return batches


def poisson_epoch(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches for one DP-SGD epoch: ceil(n / batch_size) steps, each taking every example
    independently with probability batch_size / n.

    DP-SGD's privacy amplification by subsampling assumes exactly this sampling, so batch sizes
    vary and a batch may be empty. The plan is a pure function of (seed, epoch), like `plan_epoch`;
    the extra seed word keeps its draws apart from `plan_epoch`'s.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    q = min(batch_size / n, 1.0)
    # One row of draws per step, not a (steps, n) matrix: that would be O(n^2 / batch_size) memory.
    return [np.flatnonzero(rng.random(n) < q).tolist() for _ in range(-(-n // batch_size))]


def micro_batches(batch: list[int], lengths: Sequence[int], accum: int, world: int, rank: int) -> list[list[int]]:
    """This process's share of one global batch, cut into `accum` micro-batches.

    Sorting first keeps each micro-batch's lengths close; interleaving over ranks keeps the
    per-process counts within one of each other.
    """
    ordered = sorted(batch, key=lambda i: -lengths[i])
    size = -(-len(ordered) // accum)
    return [ordered[i : i + size][rank::world] for i in range(0, len(ordered), size)]
