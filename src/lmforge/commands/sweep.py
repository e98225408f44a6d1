"""`lmforge sweep CONFIG --space train.lr=1e-5..1e-3:log --trials 12 --out runs/sweep`: Optuna
hyper-parameter search, each trial a normal run folder; leaderboard + best.yaml at the end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lmforge.config import Config
from lmforge.outputs import Output, check_outputs


def run(cfg: Config, space: list[str], out: str, trials: int = 12, max_time: float = 0.0, storage: str = "",
        seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Search `space` around `cfg` (--overwrite: replace the folder and its study); returns the best
    trial, its validation score and the leaderboard."""
    from lmforge.sweep import parse_space, sweep

    dims = parse_space(space, cfg)
    folder = Path(out)
    # A sweep folder continues its own study when given again; --overwrite starts a fresh one.
    resuming = ((folder / "study.db").is_file() or bool(storage)) and not overwrite
    check_outputs([Output(out, "--out", "folder")], [cfg.data.train, cfg.data.validation, cfg.data.test,
                                                     cfg.model.path, cfg.model.tokenizer], overwrite or resuming,
                  hint="continue that sweep by giving its folder again (it holds study.db), or pass --overwrite")
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    result = sweep(cfg, dims, folder, trials, max_time, storage, seed)
    return {"best_trial": result.best_trial, "best_value": result.best_value, "metric": result.metric,
            "leaderboard": result.rows}
