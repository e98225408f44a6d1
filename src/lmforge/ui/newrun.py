"""The New-run form: its fields from `config.describe()`, its values checked by `config.load` (the
CLI's own validation, so a bad value is refused with the key named), its data checked by the task's
`load_data` before anything starts, and the run started as `python -m lmforge finetune key=value ...`."""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterator

import numpy as np

from lmforge import config
from lmforge.config import Config
from lmforge.errors import DataError, LmforgeError
from lmforge.log import logger
from lmforge.run import check_applies, check_output_dir
from lmforge.tasks import build_task
from lmforge.tasks.contracts import ClassifiesSequences, Task
from lmforge.ui.jobs import Jobs
from lmforge.ui.paths import Roots

# Keys naming local files or folders: each must lie inside the roots (a hub id that is no local path passes).
PATH_KEYS = ("data.train", "data.validation", "data.test", "data.key_file", "model.path", "model.tokenizer",
             "distill.teacher", "distill.unlabelled")
HUB_KEYS = ("model.path", "model.tokenizer", "distill.teacher")  # may also name a hub id, downloaded not read
# Keys the UI sets itself: a run is written into its own new folder under the runs folder.
FIXED = ("output_dir", "overwrite", "train.resume")
# The command that trains a config (and resumes it); finetune for every task but pretraining.
COMMANDS = {"pretrain": "pretrain"}
NAME = re.compile(r"^[\w.\-]+$")  # one folder name; \w takes letters of every script (中文 too)


def schema() -> list[dict[str, Any]]:
    """Every config key the form shows: its doc, default and input type."""
    return [{"key": key, "doc": doc, "default": default, "type": _kind(default)}
            for key, doc, default in config.describe() if key not in FIXED]


def build(roots: Roots, name: str, values: dict[str, str]) -> tuple[Config, list[str]]:
    """The config the form describes (writing into runs/<name>) and its overrides, for the command line."""
    if not NAME.match(name) or name.strip(".") == "":
        raise FieldError("name", f"run name '{name}': use letters, digits, '-', '_' and '.' only")
    overrides = []
    for key, value in values.items():
        if key in FIXED:
            raise FieldError(key, f"config key '{key}' is set by the UI")
        if key in PATH_KEYS and value:
            value = _local(roots, key, value)
        overrides.append(f"{key}={value}")
    overrides.append(f"output_dir={roots.run_dir(name)}")
    try:
        return config.load(None, overrides), overrides
    except LmforgeError as exc:
        raise FieldError(key_in(str(exc), set(values)), str(exc)) from None


def preflight(cfg: Config) -> dict[str, Any]:
    """What `lmforge finetune` would find before training: keys that do not apply, an output folder
    in use, and every data problem (file:line), with split sizes and warnings (duplicates, overlaps)."""
    task = build_task(cfg.task, cfg)
    check_applies(cfg, task)
    check_output_dir(cfg)
    with _warnings() as warnings:
        try:
            data = task.load_data()
        except DataError as exc:
            return {"ok": False, "problems": [str(p) for p in exc.problems], "warnings": warnings, "splits": {}}
    splits = {name: {"source": split.source, "rows": len(split.locations), "labels": _label_counts(task, split)}
              for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test))}
    return {"ok": True, "problems": [], "warnings": warnings, "splits": splits}


def _label_counts(task: Task[Any], split: Any) -> dict[str, int]:
    """Examples per label for a classifier's split (multi-label: per label name); {} for other tasks."""
    if not isinstance(task, ClassifiesSequences):
        return {}
    targets = task.targets(split)
    counts = targets.sum(0) if task.multi else np.bincount(targets, minlength=len(task.label_names))
    return {name: int(n) for name, n in zip(task.label_names, counts)}


def start(jobs: Jobs, cfg: Config, overrides: list[str]) -> None:
    jobs.start(Path(cfg.output_dir), [COMMANDS.get(cfg.task, "finetune"), *overrides])


def resume(jobs: Jobs, roots: Roots, folder: Path) -> None:
    """Continue an interrupted run from its checkpoint with its saved config, as `--resume` does, in
    this folder (wherever the config says it was first written). Its data must lie inside the roots
    too: the UI starts no process that reads files it could not read itself."""
    saved = config.load(folder / "config.yaml")
    flat = config.to_dict(saved)
    for key in PATH_KEYS:
        group, name = key.split(".")
        if flat[group][name]:
            _local(roots, key, flat[group][name])
    jobs.start(folder, [COMMANDS.get(saved.task, "finetune"), str(folder / "config.yaml"), f"output_dir={folder}",
                        "--resume"])


class FieldError(LmforgeError):
    """A form value refused, with the form field (config key, or 'name') to show it at."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def key_in(message: str, given: Collection[str] = ()) -> str:
    """The first config key (or `given` key) an error message names ("config key 'train.lr': ...",
    "method=lora does not apply ..."), or '' when it names none."""
    keys = {key for key, _, _ in config.describe()} | set(given)
    for word in re.findall(r"[\w.]+", message):
        if word in keys:
            return "name" if word == "output_dir" else word
    return ""


def _local(roots: Roots, key: str, value: str) -> str:
    """A path value made absolute inside the roots (relative paths are read from where the UI runs)."""
    path = Path(value).expanduser()
    if key in HUB_KEYS and not path.is_absolute() and ".." not in path.parts and not path.exists():
        return value  # a hub id such as bert-base-chinese
    try:
        return str(roots.resolve(value, base=Path.cwd()))
    except LmforgeError as exc:
        raise FieldError(key, f"config key '{key}': {exc}") from None


def _kind(default: Any) -> str:
    return "list" if isinstance(default, list) else type(default).__name__


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """The lmforge logger's warnings while the block runs, as text."""
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                found.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
