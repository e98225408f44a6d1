"""`lmforge export-onnx MODEL --out DIR`: a classifier as ONNX, checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.tasks.contracts import ClassifiesSequences, Predicts


def run(model: str, out: str, texts: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Export the classifier folder `model` to ONNX in `out`, checked with onnxruntime on `texts`
    (a file with a text column; default: a few built-in sentences)."""
    from lmforge.compress.onnx_export import export_onnx as export
    from lmforge.models.folder import run_config
    from lmforge.tasks import build_task

    check_outputs([Output(out, "--out", "folder")], [model, texts], overwrite)
    sample = None
    if texts:
        cfg = run_config(Path(model))
        task = build_task(cfg.task, cfg)
        if not isinstance(task, Predicts) or not isinstance(task, ClassifiesSequences):
            raise LmforgeError(f"{model} is a {task.name} model: export-onnx exports sequence classifiers")
        sample = task.texts(task.read_texts(texts))[:32]
    record = export(Path(model), Path(out), sample)
    logger.info(f"wrote {Path(out) / 'model.onnx'}: onnxruntime matches PyTorch within {record['max_abs_diff']:.2e} "
                f"on {record['texts']} texts")
    return record
