"""Loading a model folder for inference — the one loader behind `lmforge.load`, the knowledge-base
encoder and a distillation teacher.

A folder is an lmforge model folder (weights + tokenizer + the run config `lmforge.yaml`), a plain
HF folder, an int8 folder of `lmforge quantize`, a LoRA adapter folder, a .gguf file (dequantised
once into a cached folder) or a hub id. Weights load from safetensors only and no code shipped with
a folder runs. The precision is resolved here, once, for everything that runs a loaded model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lmforge import config as config_mod
from lmforge.config import Config, ModelConfig
from lmforge.errors import LmforgeError
from lmforge.models.int8 import load_int8, quantize_on_load, read_spec
from lmforge.models.load import as_folder, check_weights, hub_call, is_encoder_decoder, load_tokenizer
from lmforge.models.packed import pack_linears
from lmforge.models.pooling import install_pooling
from lmforge.runtime.device import pick_device, resolve_precision

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CONFIG_FILE = "lmforge.yaml"  # the resolved run config, saved inside every model folder


@dataclass
class Placed:
    """A model and its tokenizer on a device, in the precision every call on them uses."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    precision: str  # "bf16" | "fp32"
    folder: Path


def model_folder(source: str | Path) -> Path:
    """The local folder of `source` (a .gguf file becomes its cached folder), checked to hold a model."""
    folder = Path(as_folder(str(source)))
    if folder.exists() and not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise LmforgeError(f"not a model folder (no config.json or adapter_config.json): {folder}")
    if folder.is_dir():
        check_weights(folder)
    return folder


def load_placed(source: str | Path, auto_class: str, precision: str = "auto", quantize: str = "",
                pack: bool = True) -> Placed:
    """The model of `source` as the transformers class named `auto_class`, ready for inference.

    Inference keeps no master weights, so a bf16 run casts the weights once here instead of
    autocasting every call; an int8-dynamic folder runs its fp32 activations on the CPU's int8
    kernels; a folder stored in bf16 runs in bf16 whatever is asked. `quantize="int8"` quantizes a
    float folder in memory as `lmforge quantize` would (the method by what the model does). On a CPU
    the float Linear layers get their weights packed for oneDNN once (`models/packed.py`); `pack=False`
    keeps plain `torch.nn.Linear` layers for callers that rewrite or trace the model (quantize, ONNX).
    """
    import transformers

    folder = model_folder(source)
    spec = read_spec(folder)
    if quantize not in ("", "int8"):
        raise LmforgeError(f"quantize must be int8 (or empty), not '{quantize}'")
    if quantize and spec:
        raise LmforgeError(f"{folder} is quantized already ({spec['method']}): load it without quantize")
    cls = getattr(transformers, auto_class)
    if spec:
        model = hub_call(str(source), lambda: load_int8(cls, folder, spec))
    else:
        model = hub_call(str(source), lambda: cls.from_pretrained(folder, use_safetensors=True, trust_remote_code=False))
    install_pooling(model)
    if quantize:
        spec = {"method": quantize_on_load(model, model.can_generate())}
    tokenizer = load_tokenizer(ModelConfig(path=str(folder)))
    device = torch.device("cpu") if spec else pick_device()
    chosen = "fp32" if spec and spec["method"] == "int8-dynamic" else resolve_precision(precision, device)
    chosen = "bf16" if next(model.parameters()).dtype == torch.bfloat16 else chosen
    # Int8 buffers keep their dtype under .to(dtype): only scales, norms and biases become bf16.
    model.to(device, dtype=torch.bfloat16 if chosen == "bf16" else None).eval()
    if pack and device.type == "cpu":
        pack_linears(model)
    return Placed(model, tokenizer, device, chosen, folder)


def run_config(folder: Path) -> Config:
    """The config saved with the model, pointed at this folder; defaults for a plain HF folder."""
    saved = folder / CONFIG_FILE
    cfg = config_mod.load(saved) if saved.is_file() else Config(task=_task_of_plain_folder(folder))
    cfg.model.path, cfg.model.preset, cfg.model.tokenizer = str(folder), "", ""
    return cfg


def architectures(folder: Path) -> list[str]:
    """The model classes a folder's config.json names (empty for a folder without one)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        return []
    try:
        return list(json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or [])
    except (ValueError, AttributeError) as exc:
        raise LmforgeError(f"{config_file}: not a valid model config ({exc})") from None


def _task_of_plain_folder(folder: Path) -> str:
    """A folder not written by lmforge: causal LMs and encoder-decoders (Marian, T5, NLLB) generate,
    everything else classifies."""
    causal = any(a.endswith("ForCausalLM") for a in architectures(folder))
    return "generation" if causal or is_encoder_decoder(ModelConfig(path=str(folder))) else "classification"
