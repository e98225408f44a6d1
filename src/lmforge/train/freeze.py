"""Parameters a run keeps frozen (`train.freeze_embeddings`, `train.freeze_layers`), applied by run
preparation before the loop builds its optimizer: frozen parameters get no gradient and no optimizer
state, and every strategy (plain or DP-SGD) sees the same trainable set."""

from __future__ import annotations

import torch

from lmforge.errors import LmforgeError
from lmforge.models.layers import layer_stack


def freeze_embeddings(model: torch.nn.Module) -> int:
    """Freeze the token-embedding table (`train.freeze_embeddings`); returns the parameters frozen.

    The table of a large-vocabulary model is most of its weights (96M of multilingual-e5-small's
    118M) and the optimizer update of those rows dominates a CPU step; a small fine-tuning set
    touches few rows anyway. Under DP-SGD fewer trainable parameters also means less noise, and a
    decoder whose embeddings are tied to its head can only be DP-trained with them frozen.
    """
    table = model.get_input_embeddings()
    trainable = [p for p in table.parameters() if p.requires_grad]
    table.requires_grad_(False)
    return sum(p.numel() for p in trainable)


def freeze_bottom_layers(model: torch.nn.Module, n: int) -> int:
    """Freeze the embeddings and the bottom `n` transformer layers (`train.freeze_layers`); returns the
    parameters frozen.

    With nothing trainable below layer n, autograd stops there: the backward pass (two thirds of a
    step) skips those layers entirely, not just their weight gradients. Lower layers carry general
    features a small labelled set barely changes, so on a CPU the time is better spent on more steps
    of the top layers (measured on multilingual-e5-small: README "Defaults that train"). What comes
    before the stack (token, position and type embeddings, their norm) is frozen with it; what comes
    after (pooler, final norm, head) keeps training.
    """
    stack, layers = layer_stack(model)
    if n > len(layers):
        raise LmforgeError(f"train.freeze_layers={n}: the model has only {len(layers)} transformer layers")
    named = list(model.named_parameters())
    first_layer = next(i for i, (name, _) in enumerate(named) if name.startswith(f"{stack}."))
    below = [p for _, p in named[:first_layer]] + [p for layer in layers[:n] for p in layer.parameters()]
    frozen = {id(p): p for p in below if p.requires_grad}
    for p in frozen.values():
        p.requires_grad_(False)
    return sum(p.numel() for p in frozen.values())
