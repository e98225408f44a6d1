"""Where a model keeps its stack of transformer layers: students keep some of them, pruning scores
their heads, partial fine-tuning freezes the bottom ones."""

from __future__ import annotations

from typing import Any

import torch

from lmforge.errors import LmforgeError


def layer_stack(model: Any) -> tuple[str, torch.nn.ModuleList]:
    """The ModuleList holding one entry per transformer layer (encoder.layer, model.layers, h, ...)."""
    total = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == total:
            return name, module
    raise LmforgeError(f"cannot find the {total} transformer layers of {type(model).__name__}")
