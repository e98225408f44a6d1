"""Name -> builder tables, so adding a task (or a method) touches no central `if` chain.

A task module registers itself here on import; `lmforge.tasks` imports every task module and
builds tasks by name (`lmforge.tasks.build_task`). This module imports nothing of the tasks, so it
sits at the bottom of the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from lmforge.config import Config
    from lmforge.tasks.contracts import Task

TaskBuilder = Callable[["Config"], "Task[Any]"]
TASKS: dict[str, TaskBuilder] = {}


def register_task(name: str) -> Callable[[TaskBuilder], TaskBuilder]:
    """Decorator: make `builder(cfg) -> Task` available as `task=<name>`."""

    def add(builder: TaskBuilder) -> TaskBuilder:
        TASKS[name] = builder
        return builder

    return add
