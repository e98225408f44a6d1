"""Mean pooling for encoder classifiers, kept inside the standard transformers classes.

A transformers encoder classifier (`BertForSequenceClassification`, XLM-R's, ...) reads the first
token's final hidden state. That vector is only a summary of the text when pretraining trained it as
one (BERT's next-sentence task). multilingual-e5 was trained on the *mean* of its token states and
stores no pooler; an encoder lmforge pretrains with masked LM never trains the first token either.
A head trained on such a body, frozen, can only read what the first token happens to hold; the mean
of the token states is the summary the encoder was built for (measured: README "Pooling").

`model.pooling=mean` keeps the class, its weights and its head, and only changes what the head reads:
the first position of the encoder's output is replaced by the masked mean of all positions, so the
pooler / classification head (which read position 0) see the mean. The choice is saved in the
model's config.json as `lmforge_pooling` and re-installed by every lmforge load (training, inference,
int8, ONNX export). Plain `transformers` ignores that key and would read the first token: load such a
folder with `lmforge.load`.

The attention mask reaches the encoder's output hook through a thread-local set by the classifier's
own call, so the bare encoder (`model.base_model`, used for embeddings) is left unchanged and
concurrent calls from several threads do not mix their masks.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from lmforge.errors import LmforgeError

CONFIG_KEY = "lmforge_pooling"
_HOOKED = "_lmforge_pooling_hooks"
_masks = threading.local()


def pooled_encoder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The stack whose output the head pools, when the model is an encoder-only classifier: a
    `base_model.encoder` module, on a config that is neither a decoder nor an encoder-decoder."""
    config = model.config  # transformers 5 configs carry these two flags only where they can be set
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        return None
    if model.base_model is model:  # a bare body (no head to feed): its outputs stay the token states
        return None
    encoder = getattr(model.base_model, "encoder", None)
    return encoder if isinstance(encoder, torch.nn.Module) else None


def set_pooling(model: torch.nn.Module, requested: str, head_only: bool) -> str:
    """Record and install the pooling of a new sequence-classification head; returns the choice.

    auto = mean when only the head trains on a frozen pretrained body (`train.freeze_layers` = every
    layer), first otherwise. Measured on zh reviews (README "Pooling"): a head on frozen
    multilingual-e5 learns faster and better from the mean (one pass: 0.837 against 0.798 macro-F1);
    a fully fine-tuned body learns to use its first token (one pass of multilingual-e5: mean ahead
    after 130 steps, level on test at the end), and random weights slightly prefer the first token.
    Decoder classifiers keep reading their last token. A classifier folder fine-tuned again keeps the
    pooling it records under auto (its head may be kept, and was trained to read that)."""
    supported = pooled_encoder(model) is not None
    if requested == "mean" and not supported:
        raise LmforgeError(f"model.pooling=mean needs an encoder-only model; {type(model).__name__} reads its own "
                           "token (set model.pooling=auto or first)")
    # only a classifier folder's record speaks for its head (a body saved from one carries it along)
    was_classifier = any(a.endswith("ForSequenceClassification") for a in model.config.architectures or [])
    recorded = model.config.to_dict().get(CONFIG_KEY) if was_classifier else None
    if requested == "auto":
        chosen = recorded or ("mean" if supported and head_only else "first")
    else:
        chosen = requested
    for hook in getattr(model, _HOOKED, ()):  # a loaded folder's pooling, installed by the load
        hook.remove()
    setattr(model, _HOOKED, ())
    model.config.update({CONFIG_KEY: chosen})
    install_pooling(model)
    return chosen


def install_pooling(model: torch.nn.Module) -> None:
    """Install the pooling a loaded model's config records (nothing for models without the key).
    Idempotent: loading paths may meet the same model twice."""
    if getattr(model.config, CONFIG_KEY, "first") != "mean" or getattr(model, _HOOKED, None):
        return
    encoder = pooled_encoder(model)
    if encoder is None:  # a bare body saved from a classifier carries the key along: nothing to pool for
        return
    hooks = (model.register_forward_pre_hook(_remember_mask, with_kwargs=True),
             model.register_forward_hook(_forget_mask, always_call=True),  # also when the call raised
             encoder.register_forward_hook(_first_is_mean))
    setattr(model, _HOOKED, hooks)


def _remember_mask(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    ids = kwargs.get("input_ids", args[0] if args else None)
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    if mask is None:  # transformers' meaning of no mask: every position is read
        shape = ids.shape if ids is not None else kwargs["inputs_embeds"].shape[:2]
        device = ids.device if ids is not None else kwargs["inputs_embeds"].device
        mask = torch.ones(shape, dtype=torch.long, device=device)
    _masks.current = mask


def _forget_mask(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
    _masks.current = None


def _first_is_mean(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    mask = getattr(_masks, "current", None)
    if mask is None:  # the encoder called on its own (embeddings): unchanged
        return None
    hidden = output[0]
    weights = mask.to(torch.float32).unsqueeze(-1)  # a bf16 sum over 128 positions would lose digits
    mean = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)
    pooled = torch.cat([mean.to(hidden.dtype).unsqueeze(1), hidden[:, 1:]], dim=1)
    if isinstance(output, tuple):
        return (pooled, *output[1:])
    output.last_hidden_state = pooled
    return output
