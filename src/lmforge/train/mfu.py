"""Model FLOPs utilisation: achieved training FLOP/s over this machine's measured matmul peak.

The peak is measured rather than taken from a datasheet: on a shared or throttled CPU the
datasheet number says nothing about what this process can get. It is a large square matmul in
the training precision, timed once and cached per (device, CPU, torch version, threads, precision).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from lmforge.atomic import write_text
from lmforge.runtime.device import synchronize

CACHE = Path(os.environ.get("LMFORGE_CACHE", Path.home() / ".cache" / "lmforge")) / "peak_flops.json"
SIZE = 2048


def peak_flops(device: torch.device, precision: str) -> float:
    """Measured matmul FLOP/s for `precision` on `device` (cached after the first call)."""
    key = f"{device.type}|{_processor(device)}|{torch.__version__}|{torch.get_num_threads()}|{precision}"
    cached = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    if key not in cached:
        cached[key] = _measure(device, torch.bfloat16 if precision == "bf16" else torch.float32)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        write_text(CACHE, json.dumps(cached, indent=1))
    return float(cached[key])


def _measure(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    a = torch.randn(SIZE, SIZE, device=device, dtype=dtype)
    b = torch.randn(SIZE, SIZE, device=device, dtype=dtype)
    for _ in range(3):  # warm-up: kernel selection, AMX tile configuration
        a @ b
    synchronize(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    synchronize(device)
    return 2 * SIZE**3 * runs / (time.perf_counter() - start)


def _processor(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
