"""Run folders as the UI shows them: found under the runs folder, summarised from what lmforge
writes (config.yaml, train_log.jsonl, checkpoint/, metrics.json), and their curves read back.

A run's status comes from its files, so runs started from a terminal show up too:
finished (metrics.json, or a sweep's leaderboard.json, or a model folder), running (a process the
UI started is alive; otherwise the log was written in the last RUNNING_WINDOW_S), interrupted
(a resumable checkpoint/ and no result), failed (neither).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

RUNNING_WINDOW_S = 300.0  # a log untouched this long, with no process we know of, is not running
MARKERS = ("config.yaml", "train_log.jsonl", "metrics.json", "leaderboard.json", "lmforge.yaml")
# Folders inside a run that are its parts, never runs of their own.
PARTS = {"best", "checkpoint", "tensorboard", "tokens", "final"}
# The headline metric when the config names none: the first a run's metrics hold.
HEADLINE = ("f1_macro", "accuracy", "perplexity", "token_f1", "rouge_l", "loss")


@dataclass
class Summary:
    """One row of the Runs page."""

    path: str  # relative to the runs folder: the run's id in URLs
    kind: str  # run | sweep | model
    task: str
    model: str
    status: str  # running | finished | failed | interrupted
    metric: str
    best: float | None
    steps: int
    epsilon: float | None  # DP-SGD budget spent, when trained with DP
    started: float  # seconds since the epoch
    updated: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def discover(root: Path) -> Iterator[Path]:
    """Every run folder under `root`: folders holding one of MARKERS, searched below sweeps and
    plain folders but not inside a run's own parts (best/, checkpoint/ ...)."""
    for here, dirs, files in os.walk(root, followlinks=False):
        folder = Path(here)
        is_run = folder != root and any(name in files for name in MARKERS)
        if is_run:
            yield folder
        sweep = "leaderboard.json" in files or "study.db" in files
        dirs[:] = sorted(d for d in dirs if d not in PARTS and (sweep or not is_run))


def summarize(folder: Path, rel: str, alive: bool | None = None) -> Summary:
    """`alive`: whether a process the UI started for this run lives (None: the UI started none)."""
    cfg, metrics = read_config(folder), read_json(folder / "metrics.json")
    log = folder / "train_log.jsonl"
    last, scored = last_record(log), last_record(log, "eval_")
    metric = (cfg.get("train") or {}).get("metric") or \
        next((m for m in HEADLINE if m in metrics or f"eval_{m}" in scored), "loss")
    best = metrics.get(metric, scored.get(f"eval_{metric}"))
    times = [p.stat().st_mtime for p in (folder / m for m in MARKERS) if p.exists()]
    return Summary(rel, kind(folder), cfg.get("task", ""), _model_name(cfg), status(folder, alive), metric,
                   best if isinstance(best, (int, float)) else None, int(last.get("step", 0)),
                   metrics.get("dp_epsilon", last.get("dp_epsilon")), min(times, default=0.0), max(times, default=0.0))


def kind(folder: Path) -> str:
    """sweep (a leaderboard over trial folders), model (a saved model folder, e.g. a compressed one) or run."""
    if (folder / "leaderboard.json").exists():
        return "sweep"
    return "model" if (folder / "lmforge.yaml").exists() and not (folder / "config.yaml").exists() else "run"


def status(folder: Path, alive: bool | None) -> str:
    if alive:
        return "running"
    if (folder / "metrics.json").exists() or kind(folder) != "run":
        return "finished"
    log = folder / "train_log.jsonl"
    if alive is None and log.exists() and time.time() - log.stat().st_mtime < RUNNING_WINDOW_S:
        return "running"
    return "interrupted" if (folder / "checkpoint" / "state.json").exists() else "failed"


def _model_name(cfg: dict[str, Any]) -> str:
    model = cfg.get("model") or {}
    return str(model.get("path") or (f"preset:{model['preset']}" if model.get("preset") else ""))


def read_config(folder: Path) -> dict[str, Any]:
    """The run's resolved config (empty when missing or unreadable: a run is shown whatever it holds)."""
    for name in ("config.yaml", "lmforge.yaml"):
        try:
            data = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_record(log: Path, prefix: str = "", window: int = 1 << 16) -> dict[str, Any]:
    """The last complete record of a log (with a key starting with `prefix`, if given), read from
    its end: a 100k-line log costs one small read."""
    try:
        with open(log, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - window, 0))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    for line in reversed(tail.splitlines()):
        record = _parse(line)
        if record and any(key.startswith(prefix) for key in record):
            return record
    return {}


def read_lines(log: Path, offset: int = 0) -> tuple[list[str], int]:
    """Complete lines from byte `offset` on, and the offset after the last of them (a line being
    written is left for the next read)."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", errors="replace").splitlines(), offset + end


def read_records(log: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The records of `read_lines`."""
    lines, offset = read_lines(log, offset)
    return parse(lines), offset


def downsample(lines: list[str], max_points: int) -> list[str]:
    """At most about `max_points` training records (evenly spaced, the last kept) plus the
    evaluation records (as many again at most), in order. Picked before parsing: a 100k-line log
    costs a few thousand JSON parses."""
    evals = [i for i, line in enumerate(lines) if '"eval_' in line]
    train = [i for i, line in enumerate(lines) if '"eval_' not in line]
    kept = set(_spaced(train, max_points)) | set(_spaced(evals, max_points))
    return [lines[i] for i in sorted(kept)]


def parse(lines: list[str]) -> list[dict[str, Any]]:
    return [r for r in map(_parse, lines) if r]


def _spaced(indexes: list[int], most: int) -> list[int]:
    stride = max(1, -(-len(indexes) // max(most, 1)))
    return indexes[::stride] + indexes[-1:]


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
