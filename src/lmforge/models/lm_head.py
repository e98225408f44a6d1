"""Token losses with the LM head run only at labelled positions — shared by SFT and pretraining.

The vocabulary projection is the largest matmul of a small LM, and its fp32 logits were most of
SFT's peak memory; yet the loss needs it only where a label is (answer tokens in SFT, the 15% masked
tokens in MLM). A forward pre-hook on the model's output layer gathers those positions, so the
model's own forward still runs unchanged (logit scaling, DDP / peft / Opacus wrappers).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE = -100


def token_losses(model: Any, labels: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (fp32) of `model(**inputs)` at the positions where `labels` != -100.

    `labels[b, t]` is the target for the output at position t (shift before calling for next-token
    prediction). Returns (batch, most labels in a row): each row's losses in position order, then 0.
    """
    positions, target = labelled_positions(labels)
    head = output_layer(model)
    hook = head.register_forward_pre_hook(lambda _, args: (_gather(args[0], positions), *args[1:]))
    try:
        logits = model(**inputs).logits
    finally:
        hook.remove()
    return F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=IGNORE, reduction="none")


def labelled_positions(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, targets), both (batch, most labels in a row): each row's labelled positions first,
    in order, then unlabelled ones (target -100) as padding."""
    keep = target != IGNORE
    width = int(keep.sum(1).max()) if keep.numel() else 0
    positions = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    return positions, target.gather(1, positions)


def _gather(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def output_layer(model: Any) -> torch.nn.Module:
    """The output layer, looking through DDP-style `.module` wrappers (peft forwards the lookup itself)."""
    while not hasattr(model, "get_output_embeddings") and hasattr(model, "module"):
        model = model.module
    return model.get_output_embeddings()
