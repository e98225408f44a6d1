"""Causal LMs for generation: a pretrained decoder (folder, hub id, GGUF) or a Llama preset, plus LoRA."""

from __future__ import annotations

from typing import Any

from lmforge.config import Config
from lmforge.decoding import ensure_template
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.load import load_model, load_tokenizer
from lmforge.models.presets import decoder_config

METHODS = ("full", "lora")


def build_causal_lm(cfg: Config) -> tuple[Any, Any]:
    """(model, tokenizer) ready for supervised fine-tuning with `cfg.method`."""
    import transformers
    from transformers import AutoModelForCausalLM

    if cfg.method not in METHODS:
        raise LmforgeError(f"method must be one of {', '.join(METHODS)}, not '{cfg.method}'")
    transformers.set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    ensure_template(tokenizer, cfg.generation.template)
    if cfg.model.preset:
        model = AutoModelForCausalLM.from_config(decoder_config(cfg.model.preset, len(tokenizer), tokenizer,
                                                                cfg.model.max_length))
        logger.warning(f"model: decoder preset '{cfg.model.preset}' with RANDOM weights (no pretrained checkpoint)")
    else:
        model = load_model(cfg.model, AutoModelForCausalLM)
        logger.info(f"model: {cfg.model.path}")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.method == "lora":
        from lmforge.models.lora import apply_lora

        model = apply_lora(model, cfg.lora, "CAUSAL_LM")
    return model, tokenizer
