"""Batched forward passes for evaluation and prediction, shared by the loop and `lmforge predict`."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

from lmforge.runtime.collate import Batch, Features
from lmforge.runtime.device import autocast

Outputs = dict[str, np.ndarray]  # per-example arrays, first axis = example


class Forwarding(Protocol):
    """What a batched forward pass needs: how to batch features and what to keep of the outputs."""

    def collate(self, features: Features) -> Batch: ...

    def forward(self, model: torch.nn.Module, batch: Batch) -> Outputs: ...


@torch.no_grad()
def run_forward(task: Forwarding, model: torch.nn.Module, features: Features, batch_size: int, device: torch.device,
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


def inference_order(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for prediction: sorted by length so each batch pads to nearly nothing."""
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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
