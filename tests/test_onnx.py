"""ONNX export: onnxruntime reproduces the PyTorch logits, for batches and lengths unlike the export's."""

import json

import numpy as np
import onnxruntime
import torch

from lmforge.cli import main
from lmforge.compress.onnx_export import ONNX_FILE, PARITY_FILE
from lmforge.inference import load


def test_export_onnx_parity(tiny_classifier, tiny, tmp_path):
    out = tmp_path / "onnx"
    assert main(["export-onnx", str(tiny_classifier), "--out", str(out), "--texts", str(tiny / "test.csv")]) == 0
    parity = json.loads((out / PARITY_FILE).read_text())
    assert parity["max_abs_diff"] < 1e-3 and parity["argmax_agree"] and parity["texts"] == 32
    loaded = load(tiny_classifier, precision="fp32")
    texts = ["很好 the room", "糟糕 退货 价格 服务 这个 酒店 bad awful good great"] * 3  # batch 6, new lengths
    enc = loaded.tokenizer(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {i.name: enc[i.name] for i in session.get_inputs()})[0]
    with torch.no_grad():
        expected = loaded.model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
