"""Batched forward passes for evaluation and prediction, shared by the loop and `lmforge predict`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from lmforge.tasks.base import Features, Outputs
from lmforge.train.batching import inference_order
from lmforge.train.device import autocast


@torch.no_grad()
def run_forward(task: Any, model: Any, features: Features, batch_size: int, device: torch.device,
                precision: str, indices: Sequence[int] | None = None) -> Outputs:
    """task.forward over `features[indices]` (default: all), returned in the order of `indices`.

    Batches are sorted by length so padding stays near zero; results are put back in order.
    """
    indices = list(range(len(features))) if indices is None else list(indices)
    if not indices:
        return {}
    was_training = model.training
    model.eval()
    chosen = [features[i] for i in indices]
    parts: list[tuple[list[int], Outputs]] = []
    for batch_idx in inference_order([len(f["input_ids"]) for f in chosen], batch_size):
        batch = {k: v.to(device) for k, v in task.collate([chosen[i] for i in batch_idx]).items()}
        with autocast(precision, device, model):
            parts.append((batch_idx, task.forward(model, batch)))
    model.train(was_training)
    return _reorder(parts, len(chosen))


def _reorder(parts: list[tuple[list[int], Outputs]], n: int) -> Outputs:
    order = np.concatenate([np.asarray(idx) for idx, _ in parts])
    result = {}
    for key in parts[0][1]:
        stacked = np.concatenate([out[key] for _, out in parts])
        placed = np.empty_like(stacked)
        placed[order] = stacked
        result[key] = placed
    return result


def merge_shards(shards: list[tuple[list[int], Outputs]]) -> Outputs:
    """Outputs computed by several processes on disjoint index lists, back in global order."""
    return _reorder([s for s in shards if s[0]], sum(len(idx) for idx, _ in shards))
