"""`lmforge pretrain`: a masked-LM encoder or causal-LM decoder from a corpus, on the one loop.

Writes <output_dir>/final (the last weights), <output_dir>/best (lowest validation loss), the
token files under <output_dir>/tokens, and metrics.json + report.html with the curves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lmforge import config as config_mod
from lmforge.commands.evaluate import write_json
from lmforge.commands.finetune import check_output_dir
from lmforge.config import Config
from lmforge.evaluate.report import write_report
from lmforge.log import logger
from lmforge.registry import build_task


def run(cfg: Config) -> dict[str, Any]:
    """Pretrain per `cfg` (task is always 'pretrain'); returns the final metrics."""
    from accelerate import PartialState

    from lmforge.train.checkpoint import save_model_folder
    from lmforge.train.loop import fit

    cfg = dataclasses.replace(cfg, task="pretrain")
    task = build_task("pretrain", cfg)
    data = task.load_data()
    check_output_dir(cfg)
    model, tokenizer = task.build_model(data)
    task.bind(model, tokenizer)
    train, validation = task.encode(data.train, tokenizer), task.encode(data.validation, tokenizer)
    out = Path(cfg.output_dir)
    config_mod.save(cfg, out / "config.yaml")
    result = fit(cfg, task, model, tokenizer, train, validation)
    if not PartialState().is_main_process:
        return {}
    save_model_folder(out / "final", model, tokenizer, cfg)
    metrics = _summary(cfg, result, len(train))
    write_json(out / "metrics.json", metrics)
    notes = [f"{cfg.objective} pretraining of {'preset ' + cfg.model.preset if cfg.model.preset else cfg.model.path}: "
             f"stopped ({result.stopped}) after {result.steps} steps, {metrics['tokens_trained']} tokens",
             f"validation: {data.validation.source}"]
    write_report(out / "report.html", title=f"pretrain: {out.name}", metrics=metrics, history=result.history, notes=notes)
    logger.info(f"final model: {out / 'final'}; validation loss {metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f}")
    return metrics


def _summary(cfg: Config, result: Any, n_blocks: int) -> dict[str, Any]:
    """Final validation scores plus throughput averaged over the logged windows."""
    evals = [r for r in result.history if "eval_loss" in r]
    return {
        "objective": cfg.objective,
        "loss": evals[-1]["eval_loss"],
        "perplexity": evals[-1]["eval_perplexity"],
        "best_loss": result.best_metric,
        "steps": result.steps,
        "stopped": result.stopped,
        "tokens_trained": result.history[-1]["tokens"],
        "training_blocks": n_blocks,
        "tokens_per_s": _mean_rate(result.history, "tokens_per_s"),
        "mfu": _mean_rate(result.history, "mfu"),
        "precision": result.precision,
    }


def _mean_rate(history: list[dict[str, Any]], key: str) -> float | None:
    """Mean of a logged rate, skipping the first window (step 1: start-up and kernel selection)."""
    values = [r[key] for r in history if key in r]
    values = values[1:] or values
    return sum(values) / len(values) if values else None
