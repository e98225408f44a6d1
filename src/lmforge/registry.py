"""Name -> builder tables, so adding a task (or a method) touches no central `if` chain.

A module registers itself on import; `lmforge.tasks` imports every task module once.
"""

from __future__ import annotations

from typing import Any, Callable

from lmforge.errors import LmforgeError

TASKS: dict[str, Callable[..., Any]] = {}


def register_task(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make `builder(cfg) -> Task` available as `task=<name>`."""

    def add(builder: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = builder
        return builder

    return add


def build_task(name: str, cfg: Any) -> Any:
    """The task called `name`, built for this config."""
    import lmforge.tasks  # noqa: F401  (registers the built-in tasks)

    if name not in TASKS:
        raise LmforgeError(f"unknown task '{name}' (available: {', '.join(sorted(TASKS))})")
    return TASKS[name](cfg)
