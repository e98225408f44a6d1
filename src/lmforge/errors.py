"""Errors a user can cause. The CLI prints these as one message, without a stack trace."""

from __future__ import annotations

from dataclasses import dataclass


class LmforgeError(Exception):
    """A problem with the user's input or environment, explained in the message."""


@dataclass(frozen=True)
class Problem:
    """One finding about input data: where it is, which field, and what is wrong."""

    location: str  # "path:line" for text files, "path:row N" for tables without lines
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location} [{self.field}]" if self.field else self.location
        return f"{where}: {self.message}"


class DataError(LmforgeError):
    """Input data failed pre-flight validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], limit: int = 20):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        super().__init__(f"{len(problems)} data problem(s) found; nothing was written:\n{shown}{more}")
