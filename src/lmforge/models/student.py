"""Distillation students: the teacher with fewer layers, or a smaller model of any kind.

The task that trains them (soft labels, temperature, alpha) is `lmforge.tasks.distillation`; this module
only builds the student network.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.layers import layer_stack


def build_student(cfg: Config, label_names: list[str], texts: list[str]) -> tuple[Any, Any]:
    """(model, tokenizer): the teacher cut to `distill.student_layers` layers, else `model.preset`/`model.path`.

    A preset student reads with the teacher's tokenizer unless `model.tokenizer` names another.
    """
    from lmforge.models.classifier import build_classifier

    d = cfg.distill
    if d.student_layers:
        return _layers_of_teacher(cfg, d.student_layers)
    if not cfg.model.preset and not cfg.model.path:
        raise LmforgeError("no student: set distill.student_layers (--student-layers N), model.preset or model.path")
    model_cfg = dataclasses.replace(cfg.model, tokenizer=cfg.model.tokenizer or (d.teacher if cfg.model.preset else ""))
    return build_classifier(dataclasses.replace(cfg, model=model_cfg), label_names, texts)


def _layers_of_teacher(cfg: Config, n: int) -> tuple[Any, Any]:
    """The teacher in full precision with only every k-th transformer layer kept (weights copied)."""
    from transformers import AutoModelForSequenceClassification

    from lmforge.models.load import load_model, load_tokenizer

    source = dataclasses.replace(cfg.model, path=cfg.distill.teacher, preset="", tokenizer="")
    model = load_model(source, AutoModelForSequenceClassification)
    total = model.config.num_hidden_layers
    if not 0 < n < total:
        raise LmforgeError(f"distill.student_layers must be between 1 and {total - 1} (the teacher has {total} layers)")
    keep = every_kth(total, n)
    keep_layers(model, keep)
    logger.info(f"student: teacher layers {keep} of {total} (weights copied from {cfg.distill.teacher})")
    return model, load_tokenizer(source)


def every_kth(total: int, n: int) -> list[int]:
    """n layer indices spread evenly from the bottom: 0, k, 2k, ... with k = total / n (DistilBERT's choice)."""
    return [int(np.floor(i * total / n)) for i in range(n)]


def keep_layers(model: Any, keep: list[int]) -> None:
    """Cut the model's stack of transformer layers down to `keep`, in place, and record it in the config."""
    name, layers = layer_stack(model)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], torch.nn.ModuleList(layers[i] for i in keep))
    for index, layer in enumerate(getattr(parent, name.rpartition(".")[2])):
        for module in layer.modules():  # caches and some attention kernels index layers by position
            if getattr(module, "layer_idx", None) is not None:
                module.layer_idx = index
    model.config.num_hidden_layers = len(keep)
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
