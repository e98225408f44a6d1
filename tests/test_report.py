"""The HTML report: self-contained, escaped, and robust to Chinese labels without CJK fonts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.evaluate.report import write_report

METRICS = {
    "accuracy": 0.75, "precision_macro": 0.7, "recall_macro": 0.72, "f1_macro": 0.71,
    "f1_micro": 0.75, "f1_weighted": 0.74, "ece": 0.05, "loss": 0.61, "n": 8,
    "per_class": {
        "正面": {"precision": 0.8, "recall": 0.9, "f1": 0.85, "support": 5},
        "负面": {"precision": 0.6, "recall": 0.5, "f1": 0.55, "support": 3},
    },
    "confusion_matrix": {"labels": ["正面", "负面"], "matrix": [[4, 1], [1, 2]]},
}
BASELINE = {**METRICS, "accuracy": 0.60, "ece": None}
HISTORY = [
    {"step": 10, "epoch": 0.5, "train_loss": 0.6, "lr": 3e-5},
    {"step": 20, "epoch": 1, "train_loss": 0.5, "eval_loss": 0.5, "eval_accuracy": 0.8},
]
ERRORS = [{"text": "好评<script>alert(1)</script>", "label": "正面", "pred": "负面",
           "confidence": 0.97}]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(path, title="情感 <eval>", metrics=METRICS, history=HISTORY, errors=ERRORS,
                 baseline=BASELINE, notes=["model was trained from random init"])
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left
    return path.read_text(encoding="utf-8")


def test_texts_are_escaped(full_report: str) -> None:
    assert '<meta charset="utf-8">' in full_report
    assert "好评&lt;script&gt;alert(1)&lt;/script&gt;" in full_report
    assert "<script>" not in full_report
    assert "情感 &lt;eval&gt;" in full_report
    assert "model was trained from random init" in full_report


def test_charts_and_baseline_present(full_report: str) -> None:
    assert full_report.count("data:image/png;base64,") == 4  # loss, eval, other, confusion
    assert "Baseline" in full_report
    assert "0.1500" in full_report  # difference in accuracy, model minus baseline
    assert ">loss<" in full_report


def test_no_external_references(full_report: str) -> None:
    assert "http://" not in full_report and "https://" not in full_report


def test_minimal_report_without_charts(tmp_path: Path) -> None:
    metrics = {k: v for k, v in METRICS.items() if k != "confusion_matrix"}
    path = tmp_path / "sub" / "r.html"
    write_report(path, title="t", metrics=metrics, history=[])
    text = path.read_text(encoding="utf-8")
    assert "data:image/png" not in text
    assert "Baseline" not in text


def test_multilabel_confusion_as_tables(tmp_path: Path) -> None:
    metrics = {**METRICS, "confusion_matrix": {
        "labels": ["体育", "tech"], "matrix": [[[5, 1], [2, 3]], [[6, 0], [1, 4]]]}}
    write_report(tmp_path / "r.html", title="ml", metrics=metrics)
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Confusion per label" in text and "data:image/png" not in text


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, lmforge.evaluate.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert out.stdout.strip() == "False"
