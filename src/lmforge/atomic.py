"""Atomic writes: every file and folder lmforge produces appears whole or not at all.

Content is written beside its target (same filesystem) and renamed into place, so a run killed
mid-write leaves the previous version, never half of a new one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable

from lmforge.errors import LmforgeError


def write_file(path: Path, fill: Callable[[Path], None]) -> None:
    """Call fill(tmp_path) to write the content, then rename tmp_path to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(path.parent, f".{path.name}.tmp-", _create_file)
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """A UTF-8 text file, written atomically."""
    write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_dir(target: Path, fill: Callable[[Path], None]) -> None:
    """Call fill(tmp_dir), then swap tmp_dir in as `target`, replacing any previous folder."""
    target = Path(target)
    if target.exists() and not target.is_dir():  # never rename a user's file aside as if it were a folder
        raise LmforgeError(f"{target} is a file, not a folder: refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(target.parent, f".{target.name}.tmp-", os.mkdir)
    try:
        fill(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():  # a rename cannot replace a non-empty folder: move the old one aside
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fresh(parent: Path, prefix: str, make: Callable[[Path], None]) -> Path:
    """A new, uniquely named path in `parent`, created by `make` with the permissions the umask gives.

    tempfile's mkstemp/mkdtemp create 0600 files and 0700 folders, and the rename would hand that
    privacy to the output: a model folder or metrics file others on the machine could not read,
    unlike anything `mkdir` or `open` makes."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(8)}"
        try:
            make(path)
            return path
        except FileExistsError:
            continue


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def write_json(path: Path, value: Any) -> None:
    """JSON (UTF-8, Chinese kept readable), written atomically."""
    write_text(path, json.dumps(value, ensure_ascii=False, indent=1))
