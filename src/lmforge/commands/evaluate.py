"""`lmforge evaluate MODEL --data FILE --out DIR`: metrics.json and report.html for a saved model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.atomic import write_text
from lmforge.errors import LmforgeError
from lmforge.evaluate.report import write_report
from lmforge.inference import Loaded, load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(model: str, data: str, out: str, precision: str = "auto", batch_size: int = 64,
        baseline: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Score the model in folder `model` on the labelled file `data`; write results into `out`."""
    check_outputs([Output(out, "--out", "folder")], [model, data], overwrite)
    loaded = load(model, precision=precision, batch_size=batch_size)
    split = loaded.task.read_split(data)
    train = _training_split(loaded) if baseline else None
    return write_evaluation(loaded, split, Path(out), train=train, history=_history(Path(model)),
                            title=f"{Path(model).name} on {Path(data).name}")


def write_evaluation(loaded: Loaded, split: Any, out: Path, *, train: Any = None, history: list | None = None,
                     title: str = "evaluation", notes: list[str] | None = None,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of `loaded` on `split` (and of the TF-IDF baseline trained on `train`), written to `out`."""
    task = loaded.task
    metrics, errors = task.report(loaded, split)
    metrics["precision_mode"] = loaded.precision
    metrics.update(extra or {})
    reference = task.baseline(train, split) if train is not None else None
    base = reference[0] if reference else None
    if base is not None:
        metrics["baseline"] = base
    write_json(out / "metrics.json", metrics)
    write_report(out / "report.html", title=title, metrics=metrics, history=history, errors=errors,
                 baseline=base, notes=notes)
    shown = ("accuracy", "f1_macro", "perplexity", "token_f1", "rouge_l")
    summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in shown if isinstance(metrics.get(k), float))
    logger.info(f"{title}: {summary}; wrote {out / 'metrics.json'} and {out / 'report.html'}")
    return metrics


def write_json(path: Path, value: Any) -> None:
    """JSON written atomically (temp file + rename)."""
    write_text(path, json.dumps(value, ensure_ascii=False, indent=1))


def _history(model: Path) -> list[dict[str, Any]] | None:
    """The training log of the run that wrote this folder (runs/x/best -> runs/x/train_log.jsonl; a
    distilled or pruned folder keeps its own in <folder>/run, and its parent's log is another model's)."""
    log = next((p for p in (model / "run" / "train_log.jsonl", model.parent / "train_log.jsonl") if p.is_file()), None)
    if log is None:
        return None
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def _training_split(loaded: Loaded) -> Any:
    """The training split the model was fitted on, for the baseline; None if its file is gone."""
    if not loaded.cfg.data.train or not Path(loaded.cfg.data.train).exists():
        logger.info("training data of this model not found: report without the TF-IDF baseline")
        return None
    try:
        return loaded.task.load_data().train
    except LmforgeError as exc:
        logger.warning(f"training data could not be re-read for the baseline: {exc}")
        return None
