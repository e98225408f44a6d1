"""The int8 model-folder format: int8 layers, and reading a folder `lmforge quantize` wrote.

An int8 folder is the source folder's config, tokenizer and run config plus `model.int8.safetensors`
(int8 weights, one fp32 scale per output row, the float rest) and `quantization.json` (the method and
which layers share tensors). This module is what loading needs; writing such folders is
`lmforge.compress.quantize`. It sits below `lmforge.inference`, which loads every kind of folder.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lmforge.errors import LmforgeError

METHODS = ("bf16", "int8-dynamic", "int8-weight-only")
SPEC_FILE = "quantization.json"
INT8_WEIGHTS = "model.int8.safetensors"

_PACKED_ROWS = 16  # up to this many rows (decoding), the int8 kernel beats dequantize-then-matmul


class Int8Linear(torch.nn.Module):
    """A weight-only int8 Linear: int8 weight (out, in), one scale per output row, float activations.

    Few rows in bf16/fp16 (decoding one token per sequence) go through `torch._weight_int8pack_mm`,
    which reads the int8 weight directly (~2x a bf16 Linear at 1 row here). Many rows (a prompt), or
    fp32 (where that kernel is slow), dequantize this one layer's weight for the call and matmul.
    """

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] <= _PACKED_ROWS and x.dtype in (torch.bfloat16, torch.float16):
            y = torch._weight_int8pack_mm(flat, self.weight, self.scale.to(x.dtype))
            y = y if self.bias is None else y + self.bias.to(x.dtype)
        else:
            weight = self.weight.to(x.dtype) * self.scale.to(x.dtype).unsqueeze(1)
            y = F.linear(flat, weight, None if self.bias is None else self.bias.to(x.dtype))
        return y.reshape(*x.shape[:-1], self.out_features)


class Int8Embedding(torch.nn.Module):
    """An embedding table stored int8 with one scale per row; only the looked-up rows become float."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, padding_idx: int | None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.padding_idx = padding_idx
        self.num_embeddings, self.embedding_dim = weight.shape

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight).to(self.scale.dtype) * self.scale[ids].unsqueeze(-1)


def _rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: the largest |w| of each row maps to 127."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-8) / 127
    return torch.round(w / scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8).contiguous(), scale


def convert(model: torch.nn.Module, method: str) -> dict[str, str]:
    """Replace every Linear and Embedding of `model` (on the CPU, float) with its int8 form, in place.

    Returns the tied modules (output layer name -> embedding name): an output layer that shares its
    weight with the input embedding shares the int8 table and scales too, so it is stored once.
    """
    embeddings: dict[int, tuple[str, Int8Embedding]] = {}
    tied: dict[str, str] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Embedding):
            int8 = Int8Embedding(*_rows_int8(module.weight), module.padding_idx)
            embeddings[id(module.weight)] = (name, int8)
            _replace(model, name, int8)
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear):
            continue
        bias = None if module.bias is None else module.bias.detach().float()
        shared = embeddings.get(id(module.weight))
        if shared:
            tied[name] = shared[0]
            weight, scale = shared[1].weight, shared[1].scale
        else:
            weight, scale = _rows_int8(module.weight)
        _replace(model, name, Int8Linear(weight, scale, bias))
    return tied


def pack_dynamic(model: torch.nn.Module) -> None:
    """Swap every Int8Linear for torch's dynamic int8 Linear, built from the same int8 rows and scales."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for name, module in list(model.named_modules()):
        if not isinstance(module, Int8Linear):
            continue
        # Quantized tensors are deprecated, yet this is the fast CPU kernel of the pinned torch.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dynamic = DynamicLinear(module.in_features, module.out_features, dtype=torch.qint8)
            zero = torch.zeros(module.out_features, dtype=torch.long)
            weight = torch._make_per_channel_quantized_tensor(module.weight, module.scale.double(), zero, 0)
            dynamic.set_weight_bias(weight, None if module.bias is None else module.bias.detach().float())
        _replace(model, name, dynamic)


def quantize_on_load(model: torch.nn.Module, generates: bool) -> str:
    """Quantize a loaded fp32 model in place, as `lmforge quantize` would write it; the method it chose.

    A decoder gets int8 weights with float activations (`int8-weight-only`: its token-by-token decoding
    is bound by reading weights); any other model int8 weights and activations on torch's dynamic int8
    kernels (`int8-dynamic`: an encoder's forward is bound by its matmuls). The caller keeps the model
    on the CPU, in fp32 for `int8-dynamic`.
    """
    method = "int8-weight-only" if generates else "int8-dynamic"
    convert(model.cpu().float(), method)
    if method == "int8-dynamic":
        pack_dynamic(model)
    return method


def has_dynamic_int8(model: torch.nn.Module) -> bool:
    """True when `model` runs torch's dynamic int8 Linear kernels, which have no backward."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(module, DynamicLinear) for module in model.modules())


def _replace(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def read_spec(folder: Path) -> dict[str, Any] | None:
    """The quantization.json of an int8 folder, or None for any other folder."""
    path = Path(folder) / SPEC_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_int8(auto_class: Any, folder: Path, spec: dict[str, Any]) -> torch.nn.Module:
    """The model of an int8 folder: built from its config, converted, then filled with the stored tensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    if spec.get("method") not in METHODS[1:]:
        raise LmforgeError(f"{folder / SPEC_FILE}: unknown method '{spec.get('method')}'")
    model = auto_class.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    tied = convert(model, spec["method"])
    if tied != spec.get("tied", {}):
        raise LmforgeError(f"{folder / SPEC_FILE}: tied layers {spec.get('tied')} do not match the model's {tied}")
    missing, unexpected = model.load_state_dict(load_file(str(folder / INT8_WEIGHTS)), strict=False)
    shared = {f"{name}.{part}" for name in tied for part in ("weight", "scale")}
    if set(missing) - shared or unexpected:
        raise LmforgeError(f"{folder / INT8_WEIGHTS} does not fit its config: missing {sorted(set(missing) - shared)[:3]}, "
                           f"unexpected {sorted(unexpected)[:3]}")
    if spec["method"] == "int8-dynamic":
        pack_dynamic(model)
    return model.eval()  # a tied layer's buffers are its embedding's tensors, filled in place above
