"""Output paths, checked before a command writes its first byte.

Every command that writes states its outputs (file or folder) and its inputs, and calls
`check_outputs` first. The rule is the same everywhere: an existing non-empty output is replaced only
when the user said `--overwrite` (`overwrite=true` for config commands); an output is never one of the
command's inputs, nor a folder holding one, nor a path inside an input folder; and the place it goes
must be writable. A command that fails these checks has changed nothing on disk. The writes themselves
stay atomic (`lmforge.atomic`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from lmforge.errors import LmforgeError

Kind = Literal["file", "folder"]


@dataclass(frozen=True)
class Output:
    """One path a command will write: `flag` names it in messages (`--out`, `output_dir`)."""

    path: str | Path
    flag: str
    kind: Kind


def check_outputs(outputs: Sequence[Output], inputs: Sequence[str | Path | None] = (), overwrite: bool = False,
                  hint: str = "pass --overwrite to replace it") -> None:
    """Refuse, with one message naming the flag and path, any output that would lose data.

    `inputs` are the files and folders the command reads (None, empty and not-yet-existing entries are
    skipped: nothing there can be lost); `hint` tells the user how to replace an existing output.
    """
    taken: dict[Path, str] = {}
    for out in outputs:
        if not str(out.path).strip():  # Path("") is the current folder: an empty value is a slip, not a choice
            raise LmforgeError(f"{out.flag} is empty: give the {out.kind} to write")
        if str(out.path).startswith("~"):  # no shell expanded it (a YAML value, a quoted flag)
            raise LmforgeError(f"{out.flag} {out.path}: lmforge does not expand '~' (it would write a folder named "
                               f"'~' here); give the path as {Path(out.path).expanduser()}")
        target = _real(out.path)
        if target in taken:
            raise LmforgeError(f"{out.flag} {out.path} is the same path as {taken[target]}; give each output its own path")
        taken[target] = out.flag
        for source in inputs:
            if source is not None and str(source) and Path(source).expanduser().exists():
                _refuse_overlap(out, target, _real(source), source)
        _refuse_existing(out, target, overwrite, hint)
        _refuse_unwritable(out, target)


def _real(path: str | Path) -> Path:
    """Absolute, with symlinks resolved, so two spellings of one place compare equal."""
    return Path(path).expanduser().resolve()


def _refuse_overlap(out: Output, target: Path, source: Path, given: str | Path) -> None:
    if target == source:
        raise LmforgeError(f"{out.flag} {out.path} is also an input of this command; writing it would destroy "
                           "the input: choose another path")
    if target in source.parents:
        raise LmforgeError(f"{out.flag} {out.path} holds the input {given}; writing there could destroy that "
                           "input: choose another path")
    if source in target.parents and source.is_dir():
        raise LmforgeError(f"{out.flag} {out.path} lies inside the input folder {given}; "
                           "write outputs outside the folders a command reads")


def _refuse_existing(out: Output, target: Path, overwrite: bool, hint: str) -> None:
    if not target.exists():
        return
    if out.kind == "folder" and not target.is_dir():
        raise LmforgeError(f"{out.flag} {out.path} is an existing file, not a folder: choose a folder path")
    if out.kind == "file" and target.is_dir():
        raise LmforgeError(f"{out.flag} {out.path} is a folder, not a file: give a file path")
    non_empty = any(target.iterdir()) if target.is_dir() else target.stat().st_size > 0
    if non_empty and not overwrite:
        what = "already holds files" if out.kind == "folder" else "already exists"
        raise LmforgeError(f"{out.flag} {out.path} {what}: choose another path, or {hint}")


def _refuse_unwritable(out: Output, target: Path) -> None:
    """The nearest existing ancestor must be a folder we may write in (checked, not discovered later).

    Permission bits do not tell it all (root may "write" in /proc, a read-only mount says yes to
    access()), so a file is created there and removed again."""
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise LmforgeError(f"{out.flag} {out.path} lies under {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LmforgeError(f"{out.flag} {out.path}: no permission to write in {parent}")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".lmforge-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LmforgeError(f"{out.flag} {out.path}: cannot write in {parent} ({exc.strerror})") from None
