"""Batch plans and dynamic padding: no compute spent on padding, same batches on every process.

Batches are planned as lists of example indices, not drawn from a DataLoader, so that the plan is a
pure function of (seed, epoch): resuming mid-epoch and running under several processes both reduce
to slicing the same plan.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

PAD_MULTIPLE = 16
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


def inference_order(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for prediction: sorted by length so each batch pads to nearly nothing."""
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_collate(features: list[dict[str, Any]], pad_id: int, padded: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Pad `input_ids` (and the sequence keys in `padded`, with their fill values) to the longest in
    the batch; stack every other key as a tensor.

    The width is rounded up to a multiple of PAD_MULTIPLE: a few pad tokens cost less than the
    oneDNN/cuBLAS kernel set-up for every distinct sequence length (measured ~6% faster per epoch
    on the zh sentiment bench).
    """
    width = -(-max(len(f["input_ids"]) for f in features) // PAD_MULTIPLE) * PAD_MULTIPLE
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = torch.as_tensor(f["input_ids"])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    for key, fill in (padded or {}).items():
        batch[key] = torch.full((len(features), width), fill, dtype=torch.long)
        for row, f in enumerate(features):
            batch[key][row, : len(f[key])] = torch.as_tensor(f[key])
    for key in features[0]:
        if key != "input_ids" and key not in batch:
            batch[key] = torch.as_tensor(np.asarray([f[key] for f in features]))
    return batch
