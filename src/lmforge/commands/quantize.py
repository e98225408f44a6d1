"""`lmforge quantize MODEL --method M --out DIR` and `lmforge export-onnx MODEL --out DIR`."""

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


def export_onnx(model: str, out: str, texts: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Export the classifier folder `model` to ONNX in `out`, checked with onnxruntime on `texts`
    (a file with a text column; default: a few built-in sentences)."""
    from lmforge.compress.onnx_export import export_onnx as export
    from lmforge.inference import run_config
    from lmforge.registry import build_task

    check_outputs([Output(out, "--out", "folder")], [model, texts], overwrite)
    sample = None
    if texts:
        cfg = run_config(Path(model))
        sample = build_task(cfg.task, cfg).read_texts(texts).texts[:32]
    record = export(Path(model), Path(out), sample)
    logger.info(f"wrote {Path(out) / 'model.onnx'}: onnxruntime matches PyTorch within {record['max_abs_diff']:.2e} "
                f"on {record['texts']} texts")
    return record
