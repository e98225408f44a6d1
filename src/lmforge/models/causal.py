"""Generation models: a pretrained decoder (folder, hub id, GGUF) or a Llama preset, or a pretrained
encoder-decoder (Marian, T5/mT5, NLLB), plus LoRA.

Which of the two a checkpoint is comes from its config (`is_encoder_decoder`), read without loading
weights, so `task=generation` takes either without a setting that could contradict the checkpoint.
"""

from __future__ import annotations

import re
from typing import Any

from lmforge.config import Config, ModelConfig
from lmforge.decoding import SOURCE_TEMPLATE, ensure_template
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.load import is_encoder_decoder, load_model, load_tokenizer
from lmforge.models.presets import decoder_config

METHODS = ("full", "lora")


def generation_auto_class(cfg: ModelConfig) -> str:
    """The transformers Auto* class that loads this generation model."""
    return "AutoModelForSeq2SeqLM" if is_encoder_decoder(cfg) else "AutoModelForCausalLM"


def build_lm(cfg: Config) -> tuple[Any, Any]:
    """(model, tokenizer) ready for supervised fine-tuning with `cfg.method`."""
    import transformers

    if cfg.method not in METHODS:
        raise LmforgeError(f"method must be one of {', '.join(METHODS)}, not '{cfg.method}'")
    transformers.set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    seq2seq = is_encoder_decoder(cfg.model)
    ensure_template(tokenizer, SOURCE_TEMPLATE if seq2seq else cfg.generation.template)
    if cfg.model.preset:
        model = transformers.AutoModelForCausalLM.from_config(
            decoder_config(cfg.model.preset, len(tokenizer), tokenizer, cfg.model.max_length))
        logger.warning(f"model: decoder preset '{cfg.model.preset}' with RANDOM weights (no pretrained checkpoint)")
    else:
        model = load_model(cfg.model, getattr(transformers, generation_auto_class(cfg.model)))
        logger.info(f"model: {cfg.model.path}" + (" (encoder-decoder)" if seq2seq else ""))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    freeze_unsaved(model)
    if cfg.method == "lora":
        from lmforge.models.lora import apply_lora

        model = apply_lora(model, cfg.lora, "SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM")
    return model, tokenizer


def freeze_unsaved(model: Any) -> None:
    """Freeze the weights a model's class never saves (Marian's sinusoidal positions): they are rebuilt
    when a folder loads, so training them would make the saved model differ from the trained one.
    transformers loads them trainable, and a fine-tuned Marian then scored worse after reloading."""
    patterns = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_save", None) or []]
    for name, param in model.named_parameters():
        if any(p.search(name) for p in patterns):
            param.requires_grad_(False)

