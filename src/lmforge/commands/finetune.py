"""`lmforge finetune`: validate data, build the model, train with the one loop, score the best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.config import Config
from lmforge.inference import load
from lmforge.run import Prepared, train, write_evaluation
from lmforge.train.loop import FitResult
from lmforge.train.parallel import on_main_process


def run(cfg: Config, resume: bool = False) -> dict[str, Any]:
    """Fine-tune per `cfg` (`resume`: continue the run in output_dir); returns the test metrics of
    the best checkpoint (on the main process; {} on the others of a multi-process launch, which do
    not score it)."""
    prepared, result = train(cfg, resume)
    return on_main_process(lambda: _score_best(cfg, prepared, result), {})


def _score_best(cfg: Config, prepared: Prepared, result: FitResult) -> dict[str, Any]:
    best = load(result.best_dir, precision=result.precision)
    metric = cfg.train.metric or prepared.task.default_metric
    notes = [f"training stopped: {result.stopped} after {result.steps} steps; best {metric} "
             f"on validation: {result.best_metric:.4f}", f"evaluated on: {prepared.data.test.source}"]
    if cfg.model.preset:
        notes.insert(0, f"model built from preset '{cfg.model.preset}' with RANDOM initial weights (not pretrained)")
    spent = next(({k: r[k] for k in ("dp_epsilon", "dp_delta")} for r in reversed(result.history) if "dp_epsilon" in r), {})
    if spent:
        notes.insert(0, f"trained with DP-SGD: epsilon={spent['dp_epsilon']:.3f}, delta={spent['dp_delta']:.3g}")
    return write_evaluation(best, prepared.data.test, Path(cfg.output_dir), train=prepared.data.train,
                            history=result.history, title=f"finetune: {Path(cfg.output_dir).name}", notes=notes,
                            extra=spent)
