"""Resolve `model.*` options into a tokenizer and a model of the class a task asks for."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from lmforge.atomic import write_dir
from lmforge.config import ModelConfig
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.pooling import install_pooling

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
GGUF_CACHE = Path(os.environ.get("LMFORGE_CACHE", Path.home() / ".cache" / "lmforge")) / "gguf"


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The tokenizer named by `model.tokenizer`, else the one saved with `model.path`."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or cfg.path
    if not source:
        raise LmforgeError("set model.path (a pretrained checkpoint) or model.preset plus model.tokenizer")
    folder = as_folder(source)
    tok = hub_call(source, lambda: AutoTokenizer.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code))
    if tok.pad_token is None:  # decoders often ship without one; batching needs it
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_model(cfg: ModelConfig, auto_class: Any, **kwargs: Any) -> Any:
    """A pretrained model from `model.path` with the given transformers Auto* class."""
    if not cfg.path:
        raise LmforgeError("model.path is empty: give a checkpoint folder, hub id or .gguf file, or set model.preset")
    folder = as_folder(cfg.path)
    check_weights(Path(folder))
    model = hub_call(
        cfg.path,
        lambda: auto_class.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code, **kwargs),
    )
    install_pooling(model)
    return model


def check_weights(folder: Path) -> None:
    """A local model folder must hold safetensors weights. A pickle checkpoint (pytorch_model.bin,
    .pt, .ckpt) is refused unopened, whatever transformers would do with it: unpickling a file can
    run any code its author put there."""
    if not (folder / "config.json").is_file() or any(folder.glob("*.safetensors")) \
            or (folder / "adapter_config.json").is_file():
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise LmforgeError(f"{folder} holds only pickle weights ({', '.join(pickles)}); lmforge never unpickles a "
                           "checkpoint, since loading a pickle can run any code. Convert it to model.safetensors "
                           "where you trust its source (model.save_pretrained(dir, safe_serialization=True))")
    raise LmforgeError(f"{folder}: no model weights (model.safetensors) beside its config.json")


def is_encoder_decoder(cfg: ModelConfig) -> bool:
    """Whether `model.path` holds an encoder-decoder (presets and GGUF files are decoders)."""
    if cfg.preset or not cfg.path or cfg.path.endswith(".gguf"):
        return False
    folder = Path(as_folder(cfg.path))
    if (folder / "adapter_config.json").is_file():  # a LoRA folder says which kind of model it adapts
        return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("task_type") == "SEQ_2_SEQ_LM"
    if (folder / "config.json").is_file():
        return bool(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("is_encoder_decoder"))
    from transformers import AutoConfig

    config = hub_call(cfg.path, lambda: AutoConfig.from_pretrained(str(folder), trust_remote_code=cfg.trust_remote_code))
    return bool(getattr(config, "is_encoder_decoder", False))


def set_dropout(model: Any, p: float) -> None:
    """Set every dropout rate of a model instance to `p`, leaving its saved config as it was (a
    model pretrained without dropout still fine-tunes with its config's rate once reloaded)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def unknown_rate(tokenizer: Any, texts: list[str]) -> float:
    """Share of tokens that are the unknown token: high means the vocabulary cannot read this text."""
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    total = sum(len(row) for row in ids)
    return sum(row.count(unk) for row in ids) / max(total, 1)


def as_folder(source: str) -> str:
    """Local GGUF files become a cached HF folder; everything else passes through unchanged."""
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LmforgeError(f"GGUF file not found: {path}")
        return str(_dequantised_folder(path))
    if path.exists():
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:  # a hub id is "name" or "org/name"
        raise LmforgeError(f"model folder not found: {path}")
    return source


def _dequantised_folder(path: Path) -> Path:
    """Dequantise a GGUF checkpoint once into an HF folder (safetensors), reused on later runs."""
    stat = path.resolve().stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = GGUF_CACHE / f"{path.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info(f"dequantising {path.name} into {target} (once; later runs reuse it)")
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except ImportError as exc:
        raise LmforgeError(f"reading GGUF files needs the 'gguf' package: pip install gguf ({exc})") from None
    # The dequantised weights are plain tensors now; a saved quantizer would make loaders expect GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    write_dir(target, fill)
    return target


def hub_call(source: str, load: Callable[[], Any]) -> Any:
    """Run a from_pretrained call, turning 'not found / offline' and damaged files into one clear message."""
    from safetensors import SafetensorError

    try:
        return load()
    except SafetensorError as exc:  # a truncated download, a file of something else renamed .safetensors
        files = ", ".join(sorted(p.name for p in Path(source).glob("*.safetensors"))) or "its weights"
        raise LmforgeError(f"could not load '{source}': {files} is damaged or not safetensors ({exc}); "
                           "copy or save the model again") from None
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise LmforgeError(f"could not load '{source}': {exc}") from None
        raise LmforgeError(
            f"could not load '{source}': it is not a local folder or file, and it is not in the local "
            "Hugging Face cache (this machine may be offline). Download it where there is network "
            "(`huggingface-cli download ...`) or point model.path at a local folder."
        ) from None
