"""`lmforge pretrain`: a masked-LM encoder or causal-LM decoder from a corpus, on the one loop.

Writes <output_dir>/final (the last weights), <output_dir>/best (lowest validation loss), the
token files under <output_dir>/tokens, and metrics.json + report.html with the curves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lmforge.atomic import write_json
from lmforge.config import Config
from lmforge.evaluate.report import write_report
from lmforge.log import logger
from lmforge.run import Prepared, train
from lmforge.tasks.pretrain import collapse_warning
from lmforge.train.loop import FitResult


def run(cfg: Config, resume: bool = False) -> dict[str, Any]:
    """Pretrain per `cfg` (task is always 'pretrain'; `resume`: continue the run in output_dir);
    returns the final metrics (on the main process; {} on the others of a multi-process launch)."""
    from lmforge.train.parallel import make_accelerator, on_main_process, sharded_weights

    cfg = dataclasses.replace(cfg, task="pretrain")
    prepared, result = train(cfg, resume)
    weights = sharded_weights(make_accelerator(), prepared.model)  # under FSDP every process gathers
    return on_main_process(lambda: _write_final(cfg, prepared, result, weights), {})


def _write_final(cfg: Config, prepared: Prepared, result: FitResult, weights: dict[str, Any] | None) -> dict[str, Any]:
    """final/, metrics.json and report.html, written by the main process only."""
    from lmforge.train.checkpoint import save_model_folder

    out = Path(cfg.output_dir)
    save_model_folder(out / "final", prepared.model, prepared.tokenizer, cfg, weights=weights)
    metrics = _summary(cfg, result, len(prepared.train))
    write_json(out / "metrics.json", metrics)
    for warning in metrics["warnings"]:
        logger.warning(f"pretrain: {warning}")
    model = f"preset {cfg.model.preset}" if cfg.model.preset else cfg.model.path
    notes = [*metrics["warnings"], f"{cfg.objective} pretraining of {model}: "
             f"stopped ({result.stopped}) after {result.steps} steps, {metrics['tokens_trained']} tokens",
             f"validation: {prepared.data.validation.source}"]
    write_report(out / "report.html", title=f"pretrain: {out.name}", metrics=metrics, history=result.history,
                 notes=notes)
    logger.info(f"final model: {out / 'final'}; validation loss {metrics['loss']:.4f}, "
                f"perplexity {metrics['perplexity']:.2f}")
    return metrics


def _summary(cfg: Config, result: Any, n_blocks: int) -> dict[str, Any]:
    """Final validation scores plus throughput averaged over the logged windows."""
    evals = [r for r in result.history if "eval_loss" in r]
    return {
        "objective": cfg.objective,
        "loss": evals[-1]["eval_loss"],
        "perplexity": evals[-1]["eval_perplexity"],
        "token_similarity": evals[-1]["eval_token_similarity"],
        "warnings": [w for w in [collapse_warning(evals[-1]["eval_token_similarity"])] if w],
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
