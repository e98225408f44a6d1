"""`lmforge quantize MODEL --method M --out DIR`: post-training quantization into a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(model: str, out: str, method: str, overwrite: bool = False) -> dict[str, Any]:
    """Quantize the model folder `model` into `out`; returns the method and both weight sizes in MB."""
    from lmforge.compress.quantize import quantize

    check_outputs([Output(out, "--out", "folder")], [model], overwrite)

    result = quantize(Path(model), Path(out), method)
    logger.info(f"{method}: wrote {out} ({result['source_mb']:.1f} MB of weights -> {result['out_mb']:.1f} MB)")
    return result
