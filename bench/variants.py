"""Run one bench variant in a process of its own (its own peak memory, nothing shared or cached
between variants) and read back the JSON it prints on a `RESULT ` line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

PREFIX = "RESULT "


def report(result: dict[str, Any]) -> None:
    """What a variant's process prints last, for `in_own_process` to read."""
    print(PREFIX + json.dumps(result))


def in_own_process(script: str, name: str, args: list[str]) -> dict[str, Any]:
    """`python script --variant name *args` in a fresh process; its result, or exit naming the variant."""
    done = subprocess.run([sys.executable, script, "--variant", name, *args], capture_output=True, text=True)
    line = next((out for out in done.stdout.splitlines() if out.startswith(PREFIX)), None)
    if line is None:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(line[len(PREFIX):])
    # progress on stderr: the scalar fields only (a variant may return every prediction it made)
    scalars = {key: value for key, value in result.items() if not isinstance(value, (list, dict))}
    print(f"{name}: {scalars}", file=sys.stderr, flush=True)
    return result
