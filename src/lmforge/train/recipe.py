"""The automatic recipe: learning rate, batch size and epochs chosen from what is trained and how
much data there is, for every one of them the user leaves at 0 (the default).

Why: one fixed recipe (lr 5e-5, batch 32, 3 epochs) is right for nobody. On 800 texts it makes 75
optimizer steps and a MiniLM never leaves the majority classes; LoRA adapters want ~10x that rate
and a model from random weights more still. The rules below are the usual practice, measured on
the shipped data (README "Defaults that train"):

- learning rate by what is trained: LoRA adapters 5e-4; a model from random weights 5e-4; only a
  head on a frozen body (`train.freeze_layers` = every layer) 1e-3; a pretrained model fine-tuned
  in full (or its top layers) 1e-4 when its body (parameters outside the embedding table)
  is small (< 60M: MiniLM, multilingual-e5-small), else 5e-5;
- batch size scaled to tiny data (8 below 500 examples, 16 below 2,000, else 32), so small sets
  still get many updates;
- epochs from a step floor: enough passes for STEP_FLOOR optimizer steps (1 to 30 passes); with
  early stopping on (train.patience, 3 by default) large data does not pay for it;
- the token-embedding table frozen when it is a pretrained multilingual-size table (100k+ rows, not
  tied to an output layer): 96M of multilingual-e5-small's 118M parameters, whose optimizer update
  dominates a CPU step, while a fine-tuning set touches few of its rows (measured: README).

Any explicit key wins; the choice is logged once and saved in the run's config.yaml.
"""

from __future__ import annotations

import dataclasses
import math

from lmforge.config import Config
from lmforge.log import logger
from lmforge.tasks.contracts import Model

STEP_FLOOR = 600  # optimizer steps a small dataset gets at least (measured: README)
MAX_EPOCHS = 30
SMALL_BODY = 60_000_000  # parameters outside the embedding table
LARGE_TABLE = 100_000  # embedding rows from which a pretrained table is frozen by default (XLM-R: 250k)
LR = {"lora": 5e-4, "scratch": 5e-4, "head": 1e-3, "small pretrained": 1e-4, "pretrained": 5e-5}
WHY = {"lora": "LoRA adapters", "scratch": "a model from random weights", "head": "a head on a frozen body",
       "small pretrained": "full fine-tune of a small pretrained model",
       "pretrained": "full fine-tune of a pretrained model"}


def what_is_trained(cfg: Config, model: Model) -> str:
    """'lora' | 'scratch' | 'head' | 'small pretrained' | 'pretrained' — what the learning rate depends on."""
    if cfg.method == "lora":
        return "lora"
    if not cfg.model.path:
        return "scratch"
    if cfg.train.freeze_layers and cfg.train.freeze_layers >= model.config.num_hidden_layers:
        return "head"
    return "small pretrained" if body_parameters(model) < SMALL_BODY else "pretrained"


def body_parameters(model: Model) -> int:
    """Parameters outside the token-embedding table (a 250k-piece vocabulary is not model capacity)."""
    table = sum(p.numel() for p in model.get_input_embeddings().parameters())
    return sum(p.numel() for p in model.parameters()) - table


def auto_freeze_embeddings(cfg: Config, model: Model) -> bool:
    """Whether an unset train.freeze_embeddings freezes the table: a pretrained table of LARGE_TABLE+
    rows that no output layer shares (a tied head would be frozen with it)."""
    table = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is table
    return bool(cfg.model.path) and table.shape[0] >= LARGE_TABLE and not tied


def auto_batch_size(n_train: int) -> int:
    return 8 if n_train < 500 else 16 if n_train < 2000 else 32


def auto_epochs(n_train: int, batch_size: int) -> int:
    per_epoch = math.ceil(n_train / batch_size)
    return max(1, min(MAX_EPOCHS, math.ceil(STEP_FLOOR / per_epoch)))


def resolve(cfg: Config, model: Model, n_train: int) -> Config:
    """`cfg` with every automatic (0) lr / batch_size / epochs resolved; logs what was chosen and why."""
    t = cfg.train
    said: list[str] = []
    lr, batch_size, epochs = t.lr, t.batch_size, t.epochs
    if not lr:
        kind = what_is_trained(cfg, model)
        lr = LR[kind]
        said.append(f"lr {lr:g} for {WHY[kind]}")
    if not batch_size:
        batch_size = auto_batch_size(n_train)
        said.append(f"batch {batch_size}")
    per_epoch = math.ceil(n_train / batch_size)
    if not epochs and t.max_steps:  # the step budget decides: enough passes to reach it
        epochs = math.ceil(t.max_steps / per_epoch)
    elif not epochs:
        epochs = auto_epochs(n_train, batch_size)
        steps = epochs * per_epoch
        stop = f", early stopping after {t.patience} evaluations without gain" if t.patience else ""
        said.append(f"{n_train} rows -> {epochs} epochs, {steps} steps{stop}")
    freeze = t.freeze_embeddings
    if freeze is None:
        freeze = auto_freeze_embeddings(cfg, model)
        if freeze:
            rows = model.get_input_embeddings().weight.shape[0]
            said.append(f"embedding table frozen ({rows:,} rows)")
    if said:
        logger.info("auto: " + "; ".join(said) + " (any train.* key overrides)")
    return dataclasses.replace(cfg, train=dataclasses.replace(t, lr=lr, batch_size=batch_size, epochs=float(epochs),
                                                              freeze_embeddings=freeze))
