"""Attention-head pruning by importance (Michel et al., 2019) and magnitude pruning of linear layers.

transformers 5 removed `model.prune_heads` and `config.pruned_heads`, and its attention modules
assume the same number of heads in every layer, so a head cannot be cut out of the weight matrices
without a model that plain transformers no longer loads. A pruned head is therefore *zeroed*: its
query/key/value rows and its columns of the attention output projection become exactly 0, the
layout goes into `config.pruned_heads`, and gradient masks keep those weights at 0 while the model
recovers. The folder loads with plain transformers and computes the same function as a physically
pruned model; it is as large and as fast as before (sparse, not smaller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmforge.errors import LmforgeError
from lmforge.models.layers import layer_stack
from lmforge.tasks.contracts import Features, Model, Trainable
from lmforge.train.batching import plan_epoch

Masks = dict[torch.nn.Parameter, torch.Tensor]  # parameter -> 0/1 tensor of its shape (0: pruned)


@dataclass
class Attention:
    """One layer's attention projections, for a BERT-family encoder (BERT, RoBERTa, ELECTRA, XLM-R)."""

    query: torch.nn.Linear
    key: torch.nn.Linear
    value: torch.nn.Linear
    output: torch.nn.Linear  # its input is the heads' outputs side by side
    heads: int
    size: int  # width of one head

    def span(self, head: int) -> slice:
        return slice(head * self.size, (head + 1) * self.size)


def attention_layers(model: Any) -> list[Attention]:
    """Every layer's self-attention, bottom to top."""
    found = [
        Attention(m.self.query, m.self.key, m.self.value, m.output.dense, m.self.num_attention_heads,
                  m.self.attention_head_size)
        for m in model.modules()
        if hasattr(m, "self") and hasattr(m.self, "query") and hasattr(getattr(m, "output", None), "dense")
    ]
    if not found:
        raise LmforgeError(f"head pruning supports BERT-family encoders; {type(model).__name__} has no attention "
                           "layers of that shape")
    return found


def head_importance(task: Trainable, model: Model, features: Features, batches: int, batch_size: int,
                    seed: int) -> torch.Tensor:
    """(layers, heads) importance: |d loss / d head gate|, summed over `batches` training batches and
    normalised per layer (Michel et al.'s l2 normalisation, so layers compare)."""
    layers = attention_layers(model)
    device = next(model.parameters()).device
    gates = torch.ones(len(layers), layers[0].heads, device=device, requires_grad=True)
    hooks = [a.output.register_forward_pre_hook(_gate(gates, i, a.size)) for i, a in enumerate(layers)]
    lengths = [len(f["input_ids"]) for f in features]
    score = torch.zeros_like(gates)
    was_training = model.training
    model.eval()  # no dropout: the gradient should measure the heads, not the noise
    try:
        for batch in plan_epoch(lengths, batch_size, seed, 0)[:batches]:
            inputs = {k: v.to(device) for k, v in task.collate([features[i] for i in batch]).items()}
            (grad,) = torch.autograd.grad(task.loss(model, inputs), gates)
            score += grad.abs()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return score / score.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _gate(gates: torch.Tensor, layer: int, size: int) -> Any:
    def hook(module: Any, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0] * gates[layer].repeat_interleave(size).to(args[0].dtype), *args[1:])

    return hook


def choose_heads(importance: torch.Tensor, share: float) -> dict[int, list[int]]:
    """The `share` of all heads with the lowest importance, keeping at least one head in every layer."""
    if not 0.0 <= share < 1.0:
        raise LmforgeError(f"--heads must be a share in [0, 1), got {share}")
    n_layers, n_heads = importance.shape
    budget = round(share * n_layers * n_heads)
    chosen: dict[int, list[int]] = {}
    for flat in torch.argsort(importance.flatten()).tolist():
        layer, head = divmod(flat, n_heads)
        if sum(len(h) for h in chosen.values()) == budget:
            break
        if len(chosen.get(layer, [])) < n_heads - 1:
            chosen.setdefault(layer, []).append(head)
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


def prune_heads(model: Any, heads: dict[int, list[int]]) -> Masks:
    """Zero the given heads (layer -> head indices) and record them in `config.pruned_heads`."""
    layers = attention_layers(model)
    masks: Masks = {}
    for layer, chosen in heads.items():
        a = layers[layer]
        for linear, rows in ((a.query, True), (a.key, True), (a.value, True), (a.output, False)):
            mask = masks.setdefault(linear.weight, torch.ones_like(linear.weight))
            for head in chosen:
                (mask[a.span(head)] if rows else mask[:, a.span(head)]).zero_()
            if rows and linear.bias is not None:
                bias = masks.setdefault(linear.bias, torch.ones_like(linear.bias))
                for head in chosen:
                    bias[a.span(head)] = 0
    with torch.no_grad():
        for param, mask in masks.items():
            param.mul_(mask)
    recorded = {str(k): list(v) for k, v in (getattr(model.config, "pruned_heads", None) or {}).items()}
    for layer, chosen in heads.items():
        recorded[str(layer)] = sorted(set(recorded.get(str(layer), [])) | set(chosen))
    model.config.pruned_heads = recorded
    return masks


def active_heads(model: Any) -> list[int]:
    """Heads per layer whose output-projection columns are not all zero."""
    return [sum(bool(a.output.weight[:, a.span(h)].any()) for h in range(a.heads)) for a in attention_layers(model)]


def prune_linear(model: Any, share: float) -> Masks:
    """Zero the `share` of smallest-magnitude weights of every linear layer inside the transformer
    layers (not embeddings, not the classifier head), with torch.nn.utils.prune made permanent."""
    from torch.nn.utils import prune

    if not 0.0 < share < 1.0:
        raise LmforgeError(f"--linear must be a share in (0, 1), got {share}")
    masks: Masks = {}
    for module in layer_stack(model)[1].modules():
        if isinstance(module, torch.nn.Linear):
            prune.l1_unstructured(module, "weight", amount=share)
            prune.remove(module, "weight")  # weight_orig * mask becomes the plain weight again
            masks[module.weight] = (module.weight != 0).to(module.weight.dtype)
    return masks


def keep_zero(masks: Masks) -> list[Any]:
    """Gradient hooks that keep pruned weights at exactly 0 during training (AdamW moves a weight only
    where its gradient is nonzero; decoupled weight decay keeps 0 at 0). Returns the hook handles."""
    return [param.register_hook(lambda grad, m=mask: grad * m.to(grad.device)) for param, mask in masks.items()]


def merge(*groups: Masks) -> Masks:
    """One mask per parameter: pruned wherever any group prunes it."""
    merged: Masks = {}
    for group in groups:
        for param, mask in group.items():
            merged[param] = merged[param] * mask if param in merged else mask
    return merged
