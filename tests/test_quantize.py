"""Post-training quantization: outputs stay close, folders shrink, load through predict, refuse misuse."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from lmforge.cli import main
from lmforge.compress.quantize import quantize, weights_mb
from lmforge.errors import LmforgeError
from lmforge.inference import load
from lmforge.models.int8 import INT8_WEIGHTS, SPEC_FILE


def _probs(folder: Path, texts: list[str]) -> np.ndarray:
    loaded = load(folder, precision="fp32")
    return loaded.outputs(loaded.task.text_split(texts))["probs"].astype(float)


@pytest.fixture(scope="module")
def texts(tiny) -> list[str]:
    with open(tiny / "test.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


@pytest.mark.parametrize("method", ["bf16", "int8-dynamic", "int8-weight-only"])
def test_quantized_outputs_stay_close(tiny_classifier, texts, tmp_path, method):
    original = _probs(tiny_classifier, texts)
    quantize(tiny_classifier, tmp_path / method, method)
    quantized = _probs(tmp_path / method, texts)
    assert np.abs(quantized - original).max() < 0.05
    assert (quantized.argmax(1) == original.argmax(1)).mean() >= 0.95


def test_int8_folder_stores_int8_and_is_smaller(tiny_classifier, tmp_path):
    result = quantize(tiny_classifier, tmp_path / "q", "int8-dynamic")
    assert result["out_mb"] == weights_mb(tmp_path / "q") < 0.45 * weights_mb(tiny_classifier)
    with safe_open(str(tmp_path / "q" / INT8_WEIGHTS), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["bert.encoder.layer.0.attention.self.query.weight"] == "I8"
    assert dtypes["bert.embeddings.word_embeddings.weight"] == "I8"
    assert dtypes["bert.encoder.layer.0.attention.self.query.scale"] == "F32"
    assert not (tmp_path / "q" / "model.safetensors").exists()  # plain transformers refuses, never misloads
    spec = json.loads((tmp_path / "q" / SPEC_FILE).read_text())
    assert spec["parameters"] == sum(p.numel() for p in load(tiny_classifier).model.parameters())
    bf16 = quantize(tiny_classifier, tmp_path / "b", "bf16")
    assert bf16["out_mb"] < 0.55 * bf16["source_mb"]
    assert json.loads((tmp_path / "b" / "config.json").read_text())["dtype"] == "bfloat16"


def test_loaded_int8_model_runs_int8_kernels(tiny_classifier, tmp_path):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from lmforge.models.int8 import Int8Embedding, Int8Linear

    quantize(tiny_classifier, tmp_path / "d", "int8-dynamic")
    quantize(tiny_classifier, tmp_path / "w", "int8-weight-only")
    dynamic, weight_only = load(tmp_path / "d", precision="bf16"), load(tmp_path / "w", precision="fp32")
    assert dynamic.precision == "fp32"  # dynamic int8 quantizes fp32 activations: never cast over
    assert any(isinstance(m, DynamicLinear) for m in dynamic.model.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in weight_only.model.modules())
    int8 = [m for m in weight_only.model.modules() if isinstance(m, (Int8Linear, Int8Embedding))]
    assert int8 and all(m.weight.dtype == torch.int8 for m in int8)


def test_quantized_folder_round_trips_through_predict(tiny_classifier, tiny, tmp_path):
    out = tmp_path / "int8"
    assert main(["quantize", str(tiny_classifier), "--method", "int8-dynamic", "--out", str(out)]) == 0
    for folder, name in ((tiny_classifier, "fp32.jsonl"), (out, "int8.jsonl")):
        assert main(["predict", str(folder), "--input", str(tiny / "test.csv"), "--output", str(tmp_path / name)]) == 0
    rows = [[json.loads(line) for line in (tmp_path / n).read_text().splitlines()] for n in ("fp32.jsonl", "int8.jsonl")]
    assert len(rows[1]) == 60
    assert np.mean([a["label"] == b["label"] for a, b in zip(*rows)]) >= 0.95


def test_decoder_weight_only_shares_tied_embedding_and_generates(tiny, tmp_path):
    from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM

    tok = BertTokenizerFast.from_pretrained(tiny / "tok", model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True))
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    quantize(tmp_path / "src", tmp_path / "q", "int8-weight-only")
    spec = json.loads((tmp_path / "q" / SPEC_FILE).read_text())
    assert spec["tied"] == {"lm_head": "model.embed_tokens"}
    with safe_open(str(tmp_path / "q" / INT8_WEIGHTS), "pt") as f:
        assert "lm_head.weight" not in f.keys() and "model.embed_tokens.weight" in f.keys()
    loaded = load(tmp_path / "q", precision="fp32")
    assert loaded.model.lm_head.weight is loaded.model.model.embed_tokens.weight
    ids = torch.randint(5, len(tok), (2, 9))
    with torch.no_grad():
        expected, got = model(input_ids=ids).logits, loaded.model(input_ids=ids).logits
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    assert isinstance(load(tmp_path / "q", precision="bf16").generate(["很好"])[0], str)  # the int8 decode kernel


def test_quantize_refuses_quantized_or_adapter_folders(tiny_classifier, tmp_path):
    quantize(tiny_classifier, tmp_path / "q", "int8-dynamic")
    with pytest.raises(LmforgeError, match="already quantized"):
        quantize(tmp_path / "q", tmp_path / "again", "int8-weight-only")
    with pytest.raises(LmforgeError, match="--method"):
        quantize(tiny_classifier, tmp_path / "x", "int4")
    assert not (tmp_path / "again").exists() and not (tmp_path / "x").exists()
