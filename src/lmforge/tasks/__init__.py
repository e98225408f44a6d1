"""Tasks plug into the one training loop through the protocols in `contracts`; importing this
package registers every built-in task."""

from __future__ import annotations

from typing import Any

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.registry import TASKS
from lmforge.tasks import classification, distillation, generation, ner, pretrain  # noqa: F401  (they register)
from lmforge.tasks.contracts import Task


def build_task(name: str, cfg: Config) -> Task[Any]:
    """The task called `name`, built for this config."""
    if name not in TASKS:
        raise LmforgeError(f"unknown task '{name}' (available: {', '.join(sorted(TASKS))})")
    return TASKS[name](cfg)
