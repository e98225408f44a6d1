"""`lmforge predict` works through its input a part at a time: the same file as predicting it whole."""

from __future__ import annotations

import csv
import json

from lmforge.commands import predict


def test_parts_write_what_one_pass_writes(monkeypatch, tiny_classifier, tiny, tmp_path):
    whole, parted = tmp_path / "whole.jsonl", tmp_path / "parted.jsonl"
    assert predict.run(str(tiny_classifier), str(tiny / "test.csv"), str(whole)) == 60
    monkeypatch.setattr(predict, "PART", 7)  # 9 parts, the last one short
    assert predict.run(str(tiny_classifier), str(tiny / "test.csv"), str(parted)) == 60
    rows = [json.loads(line) for line in parted.read_text(encoding="utf-8").splitlines()]
    with open(tiny / "test.csv", encoding="utf-8", newline="") as f:
        assert [r["text"] for r in rows] == [r["text"] for r in csv.DictReader(f)]  # input order kept
    for mine, reference in zip(rows, (json.loads(line) for line in whole.read_text(encoding="utf-8").splitlines())):
        assert mine["label"] == reference["label"]
        for name, p in reference["probs"].items():
            assert abs(mine["probs"][name] - p) < 1e-5  # batches differ between parts, results must not


def test_csv_output_in_parts(monkeypatch, tiny_classifier, tiny, tmp_path):
    monkeypatch.setattr(predict, "PART", 16)
    out = tmp_path / "pred.csv"
    assert predict.run(str(tiny_classifier), str(tiny / "test.csv"), str(out)) == 60
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "label", "p_neg", "p_pos"] and len(rows) == 61
    assert all(abs(float(r[2]) + float(r[3]) - 1) < 1e-4 for r in rows[1:])
