"""Classifiers (of sequences or of tokens): a pretrained body with a new head for the label set, or a
random-init preset."""

from __future__ import annotations

import random
from typing import Any

from lmforge.config import Config
from lmforge.log import logger
from lmforge.models.load import load_model, load_tokenizer, unknown_rate
from lmforge.models.pooling import set_pooling
from lmforge.models.presets import encoder_config
from lmforge.train.recipe import what_is_trained

UNKNOWN_TOKEN_LIMIT = 0.05  # above this share of unknown tokens, the vocabulary cannot read the data
COVERAGE_SAMPLE = 1000
POOLING_READS = {"mean": "the mean of the token states", "first": "the model's own summary token"}


def build_classifier(cfg: Config, label_names: list[str], texts: list[str]) -> tuple[Any, Any]:
    """(model, tokenizer) with a freshly initialised head of len(label_names) outputs."""
    from transformers import AutoModelForSequenceClassification

    problem = "multi_label_classification" if cfg.classification.multi_label else "single_label_classification"
    head = {**label_head(label_names), "problem_type": problem}
    model, tokenizer = build_headed(cfg, AutoModelForSequenceClassification, head, texts)
    pooling = set_pooling(model, cfg.model.pooling, head_only=what_is_trained(cfg, model) == "head")
    logger.info(f"model.pooling: the head reads {POOLING_READS[pooling]}")
    return model, tokenizer


def build_token_classifier(cfg: Config, label_names: list[str], texts: list[str]) -> tuple[Any, Any]:
    """(model, tokenizer) with a fresh per-token head of len(label_names) outputs (one per tag)."""
    from transformers import AutoModelForTokenClassification

    return build_headed(cfg, AutoModelForTokenClassification, label_head(label_names), texts)


def label_head(label_names: list[str]) -> dict[str, Any]:
    """The config entries that name a head's outputs; saved with the model, read back by `label_names`."""
    return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)}}


def label_names(model: Any) -> list[str]:
    """The names of a loaded model's head outputs, in id order."""
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def build_headed(cfg: Config, auto_class: Any, head: dict[str, Any], texts: list[str]) -> tuple[Any, Any]:
    """(model, tokenizer): a pretrained body (`model.path`) or a random-init preset, under a new
    head of `auto_class` described by `head` (num_labels, id2label, ...)."""
    import transformers

    transformers.set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    _check_coverage(tokenizer, texts, cfg.train.seed)
    if cfg.model.preset:
        config = encoder_config(cfg.model.preset, len(tokenizer), tokenizer.pad_token_id, cfg.model.max_length, **head)
        model = auto_class.from_config(config)
        logger.warning(f"model: preset '{cfg.model.preset}' with RANDOM weights (no pretrained checkpoint); "
                       "expect it to trail a pretrained model")
    else:
        model = load_model(cfg.model, auto_class, ignore_mismatched_sizes=True, **head)
        logger.info(f"model: {cfg.model.path} with a new {head['num_labels']}-way head")
    if model.config.pad_token_id is None:  # decoder bodies find the last real token through it
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _check_coverage(tokenizer: Any, texts: list[str], seed: int) -> None:
    """Warn when the vocabulary turns much of the data into [UNK] (e.g. an English vocab on Chinese)."""
    sample = random.Random(seed).sample(texts, min(COVERAGE_SAMPLE, len(texts)))
    rate = unknown_rate(tokenizer, sample)
    if rate > UNKNOWN_TOKEN_LIMIT:
        logger.warning(
            f"{rate:.1%} of the training text becomes unknown tokens with this tokenizer: the model cannot "
            "read much of the data (e.g. an English vocabulary on Chinese text). Use a tokenizer that "
            "covers the language."
        )
    else:
        logger.info(f"tokenizer coverage: {rate:.2%} unknown tokens on a sample of the training text")
