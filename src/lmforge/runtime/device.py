"""Device and numeric precision: chosen from the hardware, never assumed."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

from lmforge.errors import LmforgeError


def pick_device() -> torch.device:
    """CUDA when present, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@lru_cache(maxsize=None)
def _cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: there bf16 matmuls beat fp32 by several times; elsewhere they are emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def describe_box() -> str:
    """The CPU a measurement ran on, its cores, the vector flags that decide kernel speed, torch's
    threads and whether it has fast bf16: speed and even precision choices differ between boxes, so
    every bench and the demo print this line."""
    import os
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                platform.processor() or platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    vector = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "no AVX2"
    bf16 = "fast bf16 (AMX/AVX512-BF16)" if _cpu_has_fast_bf16() else "no fast bf16 (fp32 by default)"
    return (f"{name}, {os.cpu_count()} cores, {vector}, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, {bf16}")


def resolve_precision(name: str, device: torch.device) -> str:
    """'bf16' or 'fp32' for the requested precision on this device."""
    if name not in ("auto", "bf16", "fp32"):
        raise LmforgeError(f"train.precision must be auto, bf16 or fp32, not '{name}'")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and _cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: torch.device,
             model: torch.nn.Module | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast for 'bf16', a no-op for 'fp32' or for a `model` whose weights are bf16 already
    (inference casts them once at load; autocast's per-op checks would only cost time)."""
    if model is not None and next(model.parameters()).dtype == torch.bfloat16:
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (GPU); a no-op on CPU. Timings are meaningless without it on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
