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
from pathlib import Path
from typing import Any

import torch

from lmforge.atomic import write_dir
from lmforge.errors import LmforgeError
from lmforge.models.int8 import INT8_WEIGHTS, METHODS, SPEC_FILE, convert, read_spec

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".index.json")


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
    model = load(source, precision="fp32", pack=False).model.cpu().float()
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
