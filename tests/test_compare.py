"""`lmforge compare`: one row per model with every measurement, written as JSON and HTML."""

import json

from lmforge.cli import main
from lmforge.compress.measure import COLUMNS, Row, table, with_speedups
from lmforge.compress.quantize import quantize
from lmforge.inference import load


def test_compare_writes_every_model_and_key(tiny_classifier, tiny, tmp_path, capsys):
    quantize(tiny_classifier, tmp_path / "int8", "int8-dynamic")
    models = [str(tiny_classifier), str(tmp_path / "int8")]
    assert main(["compare", *models, "--data", str(tiny / "test.csv"), "--out", str(tmp_path / "cmp"),
                 "--latency-texts", "5"]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = result["models"]
    assert [r["path"] for r in rows] == models and result["data"] == str(tiny / "test.csv")
    assert {key for key, _, _ in COLUMNS} | {"path"} == set(rows[0])
    fp32, int8 = rows
    assert fp32["speedup"] == 1.0 and fp32["precision"] == "fp32"
    assert int8["size_mb"] < fp32["size_mb"] and int8["parameters"] == fp32["parameters"]
    assert all(r["latency_ms"] > 0 and r["throughput"] > 0 for r in rows)
    loaded = load(tiny_classifier, precision="fp32")
    split = loaded.task.read_split(str(tiny / "test.csv"))
    expected = loaded.task.metrics(loaded.outputs(split), loaded.task.targets(split))
    assert fp32["accuracy"] == expected["accuracy"] and fp32["f1_macro"] == expected["f1_macro"]
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count("<tr>") == 3 and "int8" in page
    assert "macro-F1" in capsys.readouterr().out


def test_table_aligns_columns_and_speedups_are_relative_to_the_first():
    rows = with_speedups([Row("a", "a", 10.0, 100, "fp32", 5.0, 50.0, 0.9, 0.8),
                          Row("bb", "bb", 2.5, 100, "fp32", 2.0, 125.0, 0.89, 0.79)])
    assert [r.speedup for r in rows] == [1.0, 2.5]
    lines = table(rows).splitlines()
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1 and "2.50x" in lines[2]
