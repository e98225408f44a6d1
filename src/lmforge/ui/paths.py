"""Which files the UI may touch: only inside the runs folder and the data roots the user named.

Every path from a request goes through `Roots.resolve`, which resolves `..` and symlinks before the
check, so `../../etc/passwd` and a symlink pointing out of a root are refused alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import LmforgeError


class Refused(LmforgeError):
    """A request named a path outside the roots (HTTP 403)."""


@dataclass(frozen=True)
class Roots:
    runs: Path
    data: tuple[Path, ...] = ()

    @classmethod
    def of(cls, runs: str | Path, data: list[str] | None = None) -> Roots:
        return cls(Path(runs).resolve(), tuple(Path(d).resolve() for d in data or []))

    def resolve(self, given: str, base: Path | None = None) -> Path:
        """`given` (relative to `base`, default the runs folder) as a real path inside a root."""
        path = Path(given).expanduser()
        real = (path if path.is_absolute() else (base or self.runs) / path).resolve()
        if not any(real.is_relative_to(root) for root in (self.runs, *self.data)):
            raise Refused(f"'{given}' is outside the runs folder and the --data roots")
        return real

    def run_dir(self, rel: str) -> Path:
        """A folder inside the runs folder (runs are addressed by their path relative to it)."""
        real = self.resolve(rel)
        if not real.is_relative_to(self.runs):
            raise Refused(f"'{rel}' is not inside the runs folder")
        return real

    def files(self, suffixes: tuple[str, ...], limit: int = 500) -> list[str]:
        """Files under the data roots ending in one of `suffixes` (at most `limit`), for the form to offer."""
        found: list[str] = []
        for root in self.data:
            for here, dirs, names in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(str(Path(here) / n) for n in sorted(names) if n.endswith(suffixes))
                if len(found) >= limit:
                    return found[:limit]
        return found

    def rel(self, folder: Path) -> str:
        """The id of a folder under the runs folder: its relative path with '/' separators."""
        return folder.relative_to(self.runs).as_posix()
