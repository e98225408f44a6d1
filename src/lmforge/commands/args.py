"""Parsing of flag values that several commands share."""

from __future__ import annotations

from lmforge.errors import LmforgeError


def comma_list(value: str, flag: str, example: str) -> list[str]:
    """`"a, b"` -> ["a", "b"]; a value naming nothing is refused, with an example of a good one."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise LmforgeError(f"{flag} names nothing; give e.g. {flag} {example}")
    return names
