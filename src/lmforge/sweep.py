"""Hyper-parameter search on the one loop, with Optuna.

Each trial is an ordinary run (prepare + fit) into `<out>/trial-NNN` with the sampled keys as
overrides, so it has the same config.yaml, logs and best/ as any run. Optuna brings the sampler
(TPE), the pruner (median of earlier trials at the same step) and the storage: a SQLite file in
the sweep folder by default, so an interrupted sweep continues where it stopped and several
processes (`lmforge sweep` started again with the same --out or --storage) share one study.

Trials are scored on the validation split only; the test split is never looked at, so picking the
best trial does not leak the test set into the choice.
"""

from __future__ import annotations

import math
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lmforge import config as config_mod
from lmforge.atomic import write_text
from lmforge.config import Config, read_yaml
from lmforge.errors import LmforgeError
from lmforge.evaluate.report import write_table
from lmforge.log import logger

if TYPE_CHECKING:
    import optuna

_RANGE = re.compile(r"^(?P<lo>[^.]+(?:\.\d+)?(?:e-?\d+)?)\.\.(?P<hi>[^:]+?)(?P<log>:log)?$")


@dataclass(frozen=True)
class Dimension:
    """One searched key: a float or int range (optionally log-uniform) or a list of choices."""

    key: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def extremes(self) -> tuple[Any, ...]:
        """Every choice, or a range's two ends: the values that must fit the key for every draw to."""
        if self.choices:
            return self.choices
        return (int(self.low), int(self.high)) if self.integer else (self.low, self.high)

    def sample(self, trial: optuna.Trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def parse_space(items: list[str], base: Config | None = None) -> list[Dimension]:
    """`key=lo..hi[:log]` (ints when both ends are ints), `key=a,b,c` (choices), or a YAML file
    mapping keys to such strings or to lists of choices. Every key must be a config key, and every
    value a trial may draw must be one the key accepts in `base` (default: the default config)."""
    entries: list[tuple[str, Any, str]] = []
    for item in items:
        if "=" not in item and Path(item).suffix in (".yaml", ".yml"):
            loaded = _read_space_file(Path(item))
            entries += [(str(k), v, f"{item}: {k}") for k, v in loaded.items()]
        else:
            key, sep, value = item.partition("=")
            if not sep:
                raise LmforgeError(f"--space {item!r}: expected key=lo..hi[:log], key=a,b,c or a .yaml file")
            entries.append((key.strip(), value.strip(), f"--space {item}"))
    if not entries:
        raise LmforgeError("sweep needs a search space: --space train.lr=1e-5..1e-3:log (or a YAML file)")
    known = {key: default for key, _, default in config_mod.describe()}
    space, seen = [], set()
    for key, value, where in entries:
        if key not in known:
            raise LmforgeError(f"{where}: '{key}' is not a config key")
        if key in seen:
            raise LmforgeError(f"{where}: '{key}' is searched twice")
        seen.add(key)
        space.append(_checked(_dimension(key, value, where), known[key], base or Config(), where))
    return space


def _checked(dim: Dimension, default: Any, base: Config, where: str) -> Dimension:
    """Refuse, before the first trial, a dimension some trial would fail on halfway through the sweep:
    a range over a key that is not a number, or a choice or range end the key does not accept."""
    if not dim.choices and (isinstance(default, bool) or not isinstance(default, (int, float))):
        raise LmforgeError(f"{where}: '{dim.key}' is not a number; search it with a list of choices a,b,c")
    for value in dim.extremes():
        try:
            config_mod.with_keys(base, {dim.key: value})
        except LmforgeError as exc:
            raise LmforgeError(f"{where}: {exc}") from None
    return dim


def _read_space_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LmforgeError(f"search space file {path} not found")
    loaded = read_yaml(path)
    if not isinstance(loaded, dict):
        raise LmforgeError(f"{path}: expected a mapping of config keys to ranges or lists")
    return loaded


def _dimension(key: str, value: Any, where: str) -> Dimension:
    if isinstance(value, list):
        if not value:
            raise LmforgeError(f"{where}: empty list of choices")
        return Dimension(key, choices=tuple(value))
    text = str(value)
    match = _RANGE.match(text)
    if match:
        lo, hi = match["lo"], match["hi"]
        try:
            low, high = float(lo), float(hi)
        except ValueError:
            raise LmforgeError(f"{where}: '{text}' is not a numeric range lo..hi") from None
        if not low < high:
            raise LmforgeError(f"{where}: the range {text} is empty (lo must be below hi)")
        if match["log"] and low <= 0:
            raise LmforgeError(f"{where}: a :log range needs a positive lower end")
        integer = _is_int(lo) and _is_int(hi)
        return Dimension(key, low, high, log=bool(match["log"]), integer=integer)
    if "," in text:
        return Dimension(key, choices=tuple(yaml.safe_load(c.strip()) for c in text.split(",")))
    raise LmforgeError(f"{where}: '{text}' is neither a range lo..hi[:log] nor a list a,b,c")


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None


@dataclass
class SweepResult:
    best_trial: int
    best_value: float
    metric: str
    rows: list[dict[str, Any]]  # the leaderboard, best first


def sweep(base: Config, space: list[Dimension], out: Path, trials: int, max_time: float = 0.0,
          storage: str = "", seed: int = 0) -> SweepResult:
    """Run up to `trials` trials (fewer when `max_time` seconds run out; counted over every process
    sharing the study), then write leaderboard.html, leaderboard.json and best.yaml into `out`."""
    import optuna

    metric = base.train.metric or check_base(base)
    lower = any(w in metric for w in ("loss", "perplexity", "ece"))
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=_storage(storage or f"sqlite:///{(out / 'study.db').resolve()}"), study_name="lmforge-sweep",
        direction="minimize" if lower else "maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    finished = len([t for t in study.trials if t.state.is_finished()])
    todo = max(0, trials - finished)
    if finished:
        logger.info(f"sweep: {finished} trials already in the study, {todo} to go")
    started = time.monotonic()

    def objective(trial: optuna.Trial) -> float:
        return _trial(base, space, out, trial, metric, started, max_time)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if todo:
        study.optimize(objective, n_trials=todo, timeout=max_time or None)
    return _write_results(study, space, out, metric)


def check_base(base: Config) -> str:
    """Refuse a bad base config before the first trial (one clear error, not N failed trials) and
    return the task's default metric."""
    from lmforge.run import check_applies
    from lmforge.tasks import build_task

    task = build_task(base.task, base)
    check_applies(base, task)
    task.load_data()
    return task.default_metric


def _storage(url: str) -> Any:
    import optuna

    # A heartbeat marks trials of a killed process as failed after 2 minutes, so a restarted sweep
    # does not wait on them forever (Optuna calls the option experimental; it has been stable since 2.x).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)


def _trial(base: Config, space: list[Dimension], out: Path, trial: optuna.Trial, metric: str, started: float,
           max_time: float) -> float:
    import optuna

    from lmforge.run import fit_prepared, prepare

    values = {d.key: d.sample(trial) for d in space}
    folder = out / f"trial-{trial.number:03d}"
    # the trial's own folder, replaced if a failed attempt of this trial number left one
    cfg = config_mod.with_keys(base, {**values, "output_dir": str(folder), "overwrite": True})
    logger.info(f"sweep trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in values.items()))

    def watch(step: int, scores: dict[str, float]) -> str | None:
        trial.report(scores[metric], step)
        if trial.should_prune():
            return "pruned"
        if max_time and time.monotonic() - started > max_time:
            return "max_time"  # the sweep's budget is spent: end this trial at its next evaluation
        return None

    prepared = prepare(cfg)
    result = fit_prepared(prepared, watch=watch)
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # a finished trial is never resumed
    trial.set_user_attr("steps", result.steps)
    trial.set_user_attr("stopped", result.stopped)
    if result.stopped == "pruned":
        raise optuna.TrialPruned()
    if result.best_metric is None or math.isnan(result.best_metric):
        raise LmforgeError(f"trial {trial.number} produced no {metric}")
    return float(result.best_metric)


def _write_results(study: optuna.Study, space: list[Dimension], out: Path, metric: str) -> SweepResult:
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise LmforgeError(f"sweep: no trial completed (see the logs of {out}/trial-*)")
    lower = study.direction == optuna.study.StudyDirection.MINIMIZE
    ranked = sorted(done, key=lambda t: t.value if lower else -t.value)
    others = [t for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE]
    rows = [_row(t, space, metric) for t in ranked + others]
    best = ranked[0]
    best_config = out / f"trial-{best.number:03d}" / "config.yaml"
    write_text(out / "best.yaml", best_config.read_text(encoding="utf-8"))
    write_text(out / "leaderboard.json", _json(rows))
    headers = ["trial", "state", f"validation {metric}", *(d.key for d in space), "steps", "minutes"]
    write_table(out / "leaderboard.html", title=f"sweep: {out.name}", headers=headers,
                rows=[[r[h] if h in r else r["params"].get(h) for h in headers] for r in rows],
                notes=[f"best: trial {best.number}, {metric}={best.value:.4f}; re-run it with "
                       f"`lmforge finetune {out / 'best.yaml'} output_dir=...`",
                       "scored on the validation split; the test split was not used to choose"])
    print(_terminal_table(headers, rows))
    return SweepResult(best.number, float(best.value), metric, rows)


def _row(t: optuna.trial.FrozenTrial, space: list[Dimension], metric: str) -> dict[str, Any]:
    minutes = ((t.datetime_complete - t.datetime_start).total_seconds() / 60
               if t.datetime_complete and t.datetime_start else None)
    return {"trial": t.number, "state": t.state.name.lower(), f"validation {metric}": t.value,
            "params": {d.key: t.params.get(d.key) for d in space}, "steps": t.user_attrs.get("steps"),
            "minutes": round(minutes, 2) if minutes is not None else None}


def _json(rows: list[dict[str, Any]]) -> str:
    import json

    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def _terminal_table(headers: list[str], rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    table = [[cell(r[h] if h in r else r["params"].get(h)) for h in headers] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)
