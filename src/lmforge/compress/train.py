"""Training a compressed model on the one loop so that `--out` itself is the model folder.

`finetune` leaves its model at <output_dir>/best; a compression command is asked for a model folder
(`--out runs/x/student`), so the run's logs go to <out>/run and the best model's files move up.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.config import Config
from lmforge.inference import Loaded, load
from lmforge.run import Prepared, fit_prepared
from lmforge.tasks.contracts import Model
from lmforge.train.checkpoint import save_model_folder
from lmforge.train.loop import FitResult
from lmforge.train.parallel import on_main_process

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def fit_to_folder(prepared: Prepared, out: Path) -> tuple[FitResult, Loaded]:
    """Fit the prepared run in <out>/run, keep its best model as the folder `out`, and load it."""
    shutil.rmtree(out / "run", ignore_errors=True)  # no stale checkpoint or curves from an earlier run
    result = fit_prepared(prepared, out / "run")
    on_main_process(lambda: _settle(result.best_dir, out), None)  # one process moves the files, the others wait
    return result, load(out, precision=result.precision)


def _settle(best: Path, out: Path) -> None:
    _promote(best, out)
    shutil.rmtree(out / "run" / "checkpoint", ignore_errors=True)  # the commands do not resume


def save_to_folder(cfg: Config, model: Model, tokenizer: PreTrainedTokenizerBase, out: Path) -> Loaded:
    """Save an untrained (e.g. pruned only) model as the folder `out`, and load it."""
    run_cfg = dataclasses.replace(cfg, output_dir=str(out / "run"))
    save_model_folder(out / "run" / "best", model, tokenizer, run_cfg)
    _promote(out / "run" / "best", out)
    return load(out, precision=cfg.train.precision)


def _promote(best: Path, out: Path) -> None:
    """Move the files of a complete model folder into `out`, one atomic rename each."""
    for item in best.iterdir():
        os.replace(item, out / item.name)
    best.rmdir()
