"""LoRA through peft: wrap a model for training, and merge adapters into a plain HF folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.config import LoraConfig
from lmforge.errors import LmforgeError
from lmforge.log import logger


def apply_lora(model: Any, cfg: LoraConfig, task_type: str) -> Any:
    """The model with trainable low-rank adapters; every other weight frozen."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets: Any = cfg.target_modules or "all-linear"  # peft: every linear except the output head
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=targets, task_type=task_type)
    try:
        wrapped = get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise LmforgeError(f"lora.target_modules: {exc}") from None
    trainable, total = wrapped.get_nb_trainable_parameters()
    logger.info(f"LoRA r={cfg.r}: training {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
    return wrapped


def is_adapter_folder(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def merge_folder(folder: Path, out: Path) -> None:
    """Fold the adapters of `folder` into the base weights; write a plain HF folder to `out`."""
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM
    from transformers import AutoTokenizer

    from lmforge.config import ModelConfig
    from lmforge.models.folder import run_config
    from lmforge.models.load import is_encoder_decoder
    from lmforge.privacy.card import read_privacy
    from lmforge.train.checkpoint import save_model_folder

    if not is_adapter_folder(folder):
        raise LmforgeError(f"{folder} holds no LoRA adapter (no adapter_config.json): nothing to merge")
    seq2seq = is_encoder_decoder(ModelConfig(path=str(folder)))
    model = (AutoPeftModelForSeq2SeqLM if seq2seq else AutoPeftModelForCausalLM).from_pretrained(folder).merge_and_unload()
    cfg = run_config(folder)
    cfg.method = "full"
    save_model_folder(out, model, AutoTokenizer.from_pretrained(folder), cfg, privacy=read_privacy(folder))
    logger.info(f"merged {folder} into {out}")
