"""Batched forward passes for evaluation and prediction, shared by the loop and `lmforge predict`."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Features
from lmforge.runtime.device import autocast

Outputs = dict[str, np.ndarray]  # per-example arrays, first axis = example


class Forwarding(Protocol):
    """What a batched forward pass needs: how to batch features and what to keep of the outputs."""

    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch: ...

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
        batch = {k: v.to(device) for k, v in task.collate([chosen[i] for i in batch_idx], multiple=1).items()}
        with autocast(precision, device, model):
            parts.append((batch_idx, task.forward(model, batch)))
    model.train(was_training)
    return _reorder(parts, len(chosen))


# What one more forward call costs beside its tokens, in tokens: measured on multilingual-e5-small on
# one CPU thread, a call takes ~12 ms (fp32) / ~10 ms (bf16) plus ~0.54 / ~0.27 ms per padded token,
# so ~22-37 tokens; smaller models have a smaller per-call cost and a smaller per-token one.
CALL_COST_TOKENS = 32


def inference_order(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for prediction: at most `batch_size` texts each, cut where they cost the least.

    Texts are sorted longest first and every batch is padded to its first text (`run_forward`
    collates with exact widths). Cutting the sorted list into fixed runs of `batch_size` pads a small
    call's short texts to its longest one (40 news sentences of 5-143 characters cost 3.5x their
    tokens that way), so the cuts are chosen by dynamic programming to minimise the padded tokens
    plus CALL_COST_TOKENS per call: on a CPU a forward's time is nearly linear in its padded tokens,
    and batching buys little beyond the per-call cost.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    width = np.maximum(np.asarray(lengths)[order], 1)
    cost = np.zeros(len(order) + 1)
    cut: np.ndarray = np.zeros(len(order) + 1, dtype=np.int64)
    for end in range(1, len(order) + 1):
        starts = np.arange(max(0, end - batch_size), end)
        total = cost[starts] + (end - starts) * width[starts] + CALL_COST_TOKENS
        best = len(total) - 1 - int(np.argmin(total[::-1]))  # ties: the later cut, so fuller early batches
        cost[end], cut[end] = total[best], starts[best]
    batches, end = [], len(order)
    while end:
        batches.append(order[cut[end] : end].tolist())
        end = int(cut[end])
    return batches[::-1]


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
