"""ONNX export of a classifier, checked against PyTorch with onnxruntime before it is kept.

The exported folder holds `model.onnx` (inputs: the tokenizer's tensors, output: `logits`, batch
and sequence length dynamic) next to the source's config, tokenizer and run config, so a serving
stack can tokenize exactly as training did. `onnx_parity.json` records the largest logit difference
between onnxruntime and PyTorch fp32 on the parity texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmforge.atomic import write_dir
from lmforge.errors import LmforgeError

ONNX_FILE = "model.onnx"
PARITY_FILE = "onnx_parity.json"
TOLERANCE = 1e-3  # fp32 graph vs fp32 eager: only operator-order rounding may differ
# Mixed scripts and lengths, so padding and truncation are exercised whatever the vocabulary.
DEFAULT_TEXTS = ["这家酒店的服务很好，房间也很干净。", "质量太差了，用了两天就坏了", "The room was fine.",
                 "好", "物流很快，包装完好，价格实惠，推荐购买！下次还来。" * 3, "not good, would not buy again"]


class _Logits(torch.nn.Module):
    """The classifier with a plain tensor output (ONNX graphs have no ModelOutput dataclasses)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def export_onnx(source: Path, out: Path, texts: list[str] | None = None) -> dict[str, Any]:
    """Export the classifier folder `source` as the ONNX folder `out`; returns the parity record."""
    import onnxruntime

    from lmforge.compress.quantize import copy_non_weights
    from lmforge.inference import load
    from lmforge.models.int8 import read_spec

    source, out = Path(source), Path(out)
    if read_spec(source):
        raise LmforgeError(f"{source} is an int8 folder: export the original (float) model folder")
    loaded = load(source, precision="fp32", pack=False)
    loaded.classifier("be exported to ONNX (export-onnx exports sequence classifiers)")
    model = _Logits(loaded.model.cpu().float().eval())
    texts = texts or DEFAULT_TEXTS
    enc = loaded.tokenizer(texts, padding=True, truncation=True, max_length=loaded.cfg.model.max_length,
                           return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    inputs = tuple(enc[n] for n in names)
    with torch.no_grad():
        expected = model(*inputs).numpy()

    def fill(tmp: Path) -> None:
        copy_non_weights(source, tmp)
        _export(model, inputs, names, tmp / ONNX_FILE)
        session = onnxruntime.InferenceSession(str(tmp / ONNX_FILE), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {n: enc[n].numpy() for n in names})[0]
        diff = float(np.abs(got - expected).max())
        if not diff <= TOLERANCE:
            raise LmforgeError(f"onnxruntime logits differ from PyTorch by {diff:.2e} (> {TOLERANCE:g}): not kept")
        record.update(max_abs_diff=diff, texts=len(texts), argmax_agree=bool((got.argmax(1) == expected.argmax(1)).all()),
                      inputs=names, onnxruntime=onnxruntime.__version__, torch=torch.__version__)
        (tmp / PARITY_FILE).write_text(json.dumps(record, indent=1))

    record: dict[str, Any] = {}
    write_dir(out, fill)
    return record


def _export(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    """Batch and sequence length stay symbolic, so any batch of any length (up to max_length) runs."""
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence", max=4096)
    shapes = {n: {0: batch, 1: length} for n in names}
    try:
        torch.onnx.export(model, inputs, str(path), input_names=names, output_names=["logits"],
                          dynamic_shapes=shapes, dynamo=True, external_data=False)
    except Exception as exc:  # the exporter's own errors are many types; name the model's problem
        raise LmforgeError(f"ONNX export failed for {type(model.model).__name__}: {exc}") from None
