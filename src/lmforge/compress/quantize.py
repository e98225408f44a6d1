"""Post-training quantization into model folders that `lmforge.inference.load` loads as they are.

- `bf16`: a plain HF folder whose safetensors hold bf16 weights; transformers itself loads it.
- `int8-dynamic` (classifiers/encoders): every Linear weight int8 with one fp32 scale per output row
  (symmetric); at run time activations are quantized too, by torch's own dynamic int8 Linear
  (fbgemm/oneDNN, fused; measured ~3x a fp32 Linear on this CPU, where `torch._int_mm` plus
  separate quantize/rescale steps was slower than fp32).
- `int8-weight-only` (decoders, whose token-by-token decoding is bound by reading weights): int8
  weights and scales, float activations, so activation outliers are kept exactly.

Both int8 methods also store every Embedding int8 per row (a big vocabulary is most of a small
model) and look rows up without dequantizing the table. An int8 folder is the source folder's
config, tokenizer and run config plus `model.int8.safetensors` (int8 weights, scales, the float
rest) and `quantization.json`; it holds int8 on disk and in memory. Plain transformers finds no
`model.safetensors` there and refuses it rather than loading it wrongly.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lmforge.atomic import write_dir
from lmforge.errors import LmforgeError

METHODS = ("bf16", "int8-dynamic", "int8-weight-only")
SPEC_FILE = "quantization.json"
INT8_WEIGHTS = "model.int8.safetensors"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".index.json")


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
        with warnings.catch_warnings():  # quantized tensors are deprecated, yet this is the fast CPU kernel of the pinned torch
            warnings.simplefilter("ignore", UserWarning)
            dynamic = DynamicLinear(module.in_features, module.out_features, dtype=torch.qint8)
            zero = torch.zeros(module.out_features, dtype=torch.long)
            weight = torch._make_per_channel_quantized_tensor(module.weight, module.scale.double(), zero, 0)
            dynamic.set_weight_bias(weight, None if module.bias is None else module.bias.detach().float())
        _replace(model, name, dynamic)


def _replace(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize(source: Path, out: Path, method: str) -> dict[str, Any]:
    """Write the model folder `source` quantized with `method` as the folder `out`; returns sizes."""
    from safetensors.torch import save_file

    from lmforge.inference import load

    if method not in METHODS:
        raise LmforgeError(f"--method must be one of {', '.join(METHODS)}, not '{method}'")
    source, out = Path(source), Path(out)
    if read_spec(source) or _stored_dtype(source) == "bfloat16":
        raise LmforgeError(f"{source} is already quantized: quantize the original model folder")
    if (source / "adapter_config.json").is_file():
        raise LmforgeError(f"{source} holds LoRA adapters: merge them first with `lmforge merge`")
    model = load(source, precision="fp32").model.cpu().float()
    spec = {"method": method, "parameters": sum(p.numel() for p in model.parameters())}

    def fill(tmp: Path) -> None:
        copy_non_weights(source, tmp)
        if method == "bf16":
            model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
            return
        tied = convert(model, method)
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if not any(k.startswith(f"{name}.") and not k.endswith(".bias") for name in tied)}
        save_file(state, str(tmp / INT8_WEIGHTS), metadata={"format": "pt"})
        (tmp / SPEC_FILE).write_text(json.dumps({**spec, "tied": tied}, indent=1))

    write_dir(out, fill)
    return {"method": method, "source_mb": weights_mb(source), "out_mb": weights_mb(out)}


def _stored_dtype(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return data.get("dtype") or data.get("torch_dtype")


def copy_non_weights(source: Path, target: Path) -> None:
    """Config, tokenizer, run config, model card: everything of the folder but its weights."""
    for item in source.iterdir():
        if item.is_file() and not item.name.endswith(_WEIGHT_SUFFIXES) and item.name != SPEC_FILE:
            shutil.copy2(item, target / item.name)


def weights_mb(folder: Path) -> float:
    """Megabytes of the weight files at the top of a model folder (not its logs or checkpoints)."""
    files = [f for f in Path(folder).iterdir() if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES + (".onnx",))]
    return sum(f.stat().st_size for f in files) / 1e6


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
