"""`lmforge baseline`: the task's non-neural bar (TF-IDF + logistic regression for classification),
scored exactly as a neural run is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge import config as config_mod
from lmforge.atomic import write_json
from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.evaluate.report import write_report
from lmforge.log import logger
from lmforge.run import check_applies, check_output_dir
from lmforge.tasks import build_task
from lmforge.tasks.contracts import Baselined


def run(cfg: Config) -> dict[str, Any]:
    """Fit the baseline on the training split, score it on test (or validation); write metrics.json."""
    task = build_task(cfg.task, cfg)
    if not isinstance(task, Baselined):
        raise LmforgeError(f"task={cfg.task} has no non-neural baseline")
    check_applies(cfg, task)
    data = task.load_data()
    check_output_dir(cfg)
    out = Path(cfg.output_dir)
    metrics, errors = task.baseline(data.train, data.test)
    config_mod.save(cfg, out / "config.yaml")
    write_json(out / "metrics.json", metrics)
    write_report(out / "report.html", title=f"baseline: {out.name}", metrics=metrics, errors=errors,
                 notes=[f"{cfg.task} baseline", f"evaluated on: {data.test.source}"])
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    logger.info(f"baseline {shown}; wrote {out}")
    return metrics
