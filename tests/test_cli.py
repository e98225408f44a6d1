"""The CLI end to end on the tiny model: finetune -> evaluate -> predict, help, errors, artefacts."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lmforge
from lmforge.cli import main

LMFORGE = [sys.executable, "-m", "lmforge"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LMFORGE, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["finetune", f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}",
                 "model.preset=tiny", f"model.tokenizer={tiny / 'tok'}", f"output_dir={out}", "train.epochs=4",
                 "train.batch_size=16", "train.lr=2e-3", "train.seed=0"])
    assert code == 0
    return out


def test_finetune_writes_the_run_folder(trained):
    for name in ["config.yaml", "metrics.json", "report.html", "train_log.jsonl", "best/model.safetensors",
                 "best/config.json", "best/tokenizer.json", "checkpoint/optimizer.pt"]:
        assert (trained / name).exists(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ["accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro", "f1_weighted",
                "per_class", "confusion_matrix", "ece", "baseline"]:
        assert key in metrics, key
    assert metrics["accuracy"] > 0.8
    assert set(metrics["per_class"]) == {"neg", "pos"}
    assert np.sum(metrics["confusion_matrix"]["matrix"]) == 60
    report = (trained / "report.html").read_text(encoding="utf-8")
    assert "Baseline (TF-IDF + LR)" in report and "data:image/png;base64," in report


def test_evaluate_and_predict(trained, tiny, tmp_path):
    assert main(["evaluate", str(trained / "best"), "--data", str(tiny / "test.csv"), "--out", str(tmp_path / "eval")]) == 0
    fresh = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert fresh["accuracy"] == pytest.approx(json.loads((trained / "metrics.json").read_text())["accuracy"])
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(trained / "best"), "--input", str(tiny / "test.csv"), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 60 and rows[0]["label"] in ("pos", "neg")
    assert sum(rows[0]["probs"].values()) == pytest.approx(1.0, abs=1e-4)


def test_python_api_agrees_with_transformers_pipeline(trained):
    from transformers import pipeline

    texts = ["这个 酒店 很好", "房间 失望 the", "great room"]
    ours = lmforge.load(trained / "best", precision="fp32").predict(texts)
    theirs = pipeline("text-classification", model=str(trained / "best"), top_k=None)(texts)
    for mine, hf in zip(ours, theirs):
        assert mine["label"] == hf[0]["label"]
        for entry in hf:
            assert mine["probs"][entry["label"]] == pytest.approx(entry["score"], abs=1e-4)


def test_help_lists_every_config_key():
    done = _cli("finetune", "--help")
    assert done.returncode == 0
    for key in ["model.path", "data.encoding", "train.max_time", "train.precision", "classification.multi_label"]:
        assert key in done.stdout
    assert "--data" in _cli("evaluate", "--help").stdout


def test_user_errors_are_one_line_without_traceback(tmp_path):
    done = _cli("finetune", "train.lr_rate=1")
    assert done.returncode == 2 and "unknown config key 'train.lr_rate'" in done.stderr
    assert "Traceback" not in done.stderr
    done = _cli("predict", str(tmp_path / "missing"), "--input", "x.csv", "--output", "y.jsonl")
    assert done.returncode == 2 and "model folder not found" in done.stderr and "Traceback" not in done.stderr
    assert "Traceback" in _cli("--debug", "finetune", "train.lr_rate=1").stderr


def test_predict_refuses_bad_input_and_writes_nothing(trained, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text\n很好\n\n   \n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(trained / "best"), "--input", str(bad), "--output", str(out)]) == 2
    assert not out.exists()


def test_evaluate_report_has_training_curves(trained, tiny, tmp_path):
    assert main(["evaluate", str(trained / "best"), "--data", str(tiny / "test.csv"), "--out", str(tmp_path / "e"),
                 "--no-baseline"]) == 0
    report = (tmp_path / "e" / "report.html").read_text(encoding="utf-8")
    assert report.count("data:image/png;base64,") >= 2  # loss/metric curves from train_log.jsonl + confusion map
    assert "baseline" not in json.loads((tmp_path / "e" / "metrics.json").read_text())
