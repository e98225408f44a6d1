"""`lmforge finetune`: validate data, build the model, train with the one loop, score the best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge import config as config_mod
from lmforge.config import Config
from lmforge.outputs import Output, check_outputs
from lmforge.inference import load
from lmforge.registry import build_task


def run(cfg: Config) -> dict[str, Any]:
    """Fine-tune per `cfg`; returns the test metrics of the best checkpoint."""
    from lmforge.commands.evaluate import write_evaluation
    from lmforge.train.loop import fit

    task = build_task(cfg.task, cfg)
    data = task.load_data()  # every data error surfaces here, before output_dir is touched
    check_output_dir(cfg)
    model, tokenizer = task.build_model(data)
    task.bind(model, tokenizer)
    train, validation = task.encode(data.train, tokenizer), task.encode(data.validation, tokenizer)
    config_mod.save(cfg, Path(cfg.output_dir) / "config.yaml")
    result = fit(cfg, task, model, tokenizer, train, validation)
    best = load(result.best_dir, precision=result.precision)
    notes = [f"training stopped: {result.stopped} after {result.steps} steps; best {task.default_metric if not cfg.train.metric else cfg.train.metric} "
             f"on validation: {result.best_metric:.4f}", f"evaluated on: {data.test.source}"]
    if cfg.model.preset:
        notes.insert(0, f"model built from preset '{cfg.model.preset}' with RANDOM initial weights (not pretrained)")
    spent = next(({k: r[k] for k in ("dp_epsilon", "dp_delta")} for r in reversed(result.history) if "dp_epsilon" in r), {})
    if spent:
        notes.insert(0, f"trained with DP-SGD: epsilon={spent['dp_epsilon']:.3f}, delta={spent['dp_delta']:.3g}")
    return write_evaluation(best, data.test, Path(cfg.output_dir), train=data.train, history=result.history,
                            title=f"finetune: {Path(cfg.output_dir).name}", notes=notes, extra=spent)


def check_output_dir(cfg: Config) -> None:
    """Refuse to mix a new run into a folder holding another (unless resuming or told to overwrite),
    and an output_dir that is, holds or lies inside one of the run's inputs."""
    inputs = [cfg.data.train, cfg.data.validation, cfg.data.test, cfg.data.key_file, cfg.model.path,
              cfg.model.tokenizer, cfg.distill.teacher, cfg.distill.unlabelled]
    check_outputs([Output(cfg.output_dir, "output_dir", "folder")], inputs, cfg.overwrite or cfg.train.resume,
                  hint="continue it with --resume, or replace it with overwrite=true")
