"""`lmforge baseline`: the TF-IDF + logistic regression bar, scored exactly as a neural run is."""

from __future__ import annotations

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
    """Fit the baseline on the training split, score it on test (or validation); write metrics.json."""
    task = build_task(cfg.task, cfg)
    data = task.load_data()
    check_output_dir(cfg)
    out = Path(cfg.output_dir)
    metrics, errors = task.baseline(data.train, data.test)
    config_mod.save(cfg, out / "config.yaml")
    write_json(out / "metrics.json", metrics)
    write_report(out / "report.html", title=f"TF-IDF baseline: {out.name}", metrics=metrics, errors=errors,
                 notes=["char 1-3-gram TF-IDF + logistic regression", f"evaluated on: {data.test.source}"])
    logger.info(f"baseline accuracy={metrics['accuracy']:.4f} f1_macro={metrics['f1_macro']:.4f}; wrote {out}")
    return metrics
