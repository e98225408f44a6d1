"""Careless and hostile input, one case per row: each gets one `error:` line naming the file, line,
field or key — no traceback, no silent acceptance — and nothing is written. `lmforge baseline` runs
the same config and data checks as every training command, without a model, so the cases stay fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.cli import main

ROWS = [(f"好评{i}", "pos") for i in range(20)] + [(f"差评{i}", "neg") for i in range(20)]


def _csv(rows: list[tuple[str, str]], header: str = "text,label\n", newline: str = "\n") -> bytes:
    return (header + newline.join(f"{t},{label}" for t, label in rows) + newline).encode("utf-8")


CASES: dict[str, tuple[str, bytes, str]] = {
    # name: (file name, bytes, expected message)
    "csv with a NUL byte": ("nul.csv", _csv(ROWS + [("差\x00评", "neg")]), "nul.csv:42 [text]: text holds a NUL byte"),
    "csv with an unterminated quote": ("quote.csv", b'text,label\n"good,pos\nbad,neg\n', "quote.csv:2"),
    "csv with a 5 MB single line": ("long.csv", _csv(ROWS) + b"x" * 5_000_000 + b",pos\n", "long.csv:42"),
    "labels 1 and 1.0 in one file": ("nums.csv", _csv([(f"a{i}", "1") for i in range(10)]
                                                  + [(f"b{i}", "1.0") for i in range(10)]
                                                  + [(f"c{i}", "0") for i in range(10)]),
                                     "labels '1', '1.0' are one number spelled differently"),
    "empty file": ("empty.csv", b"", "empty.csv: file is empty"),
    "header-only file": ("header.csv", b"text,label\n", "need at least 2 classes"),
    "two rows, nothing to hold out": ("two.csv", _csv([("好", "pos"), ("差", "neg")]), "too few to hold out"),
    "jsonl with a non-object line": ("list.jsonl", b'{"text": "a", "label": "x"}\n[1, 2]\n',
                                     "list.jsonl:2: expected a JSON object"),
    "jsonl with trailing garbage": ("trail.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"} junk\n',
                                    "trail.jsonl:2: not valid JSON"),
    "json that is an object, not a list": ("obj.json", json.dumps({"text": "a", "label": "x"}).encode(),
                                           "obj.json: expected a JSON array"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_data_gets_one_clear_error_and_nothing_is_written(name, tmp_path, capsys):
    file_name, content, message = CASES[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    out = tmp_path / "out"
    assert main(["baseline", f"data.train={path}", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_a_folder_where_a_file_is_expected(tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    assert main(["baseline", f"data.train={tmp_path / 'dir.csv'}", f"output_dir={tmp_path / 'out'}"]) == 2
    assert "dir.csv is a folder" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, message", [
    ("train.lr=nan", "'train.lr': expected a finite number"),
    ("train.batch_size=-1", "'train.batch_size': must be at least 0"),
    ("train.grad_accum=0", "'train.grad_accum': must be at least 1"),
    ("train.precision=fp8", "'train.precision': must be one of"),
    ("train.schedule=exponential", "'train.schedule': must be one of"),
    ("model.max_length=0", "'model.max_length': must be at least 1"),
])
def test_bad_values_are_refused_before_the_output_folder_exists(override, message, tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_bytes(_csv(ROWS))
    assert main(["finetune", f"data.train={data}", f"output_dir={tmp_path / 'out'}", "model.preset=tiny", override]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file(tmp_path, capsys):
    data, taken = tmp_path / "train.csv", tmp_path / "taken.txt"
    data.write_bytes(_csv(ROWS))
    taken.write_text("keep me")
    assert main(["baseline", f"data.train={data}", f"output_dir={taken}", "overwrite=true"]) == 2
    assert "output_dir" in capsys.readouterr().err and Path(taken).read_text() == "keep me"


@pytest.mark.parametrize("content, message", [("- a\n- b\n", "mapping"), ("train:\n\tlr: 1\n", "cfg.yaml")])
def test_a_yaml_file_that_is_a_list_or_has_a_tab(content, message, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(content)
    assert main(["baseline", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
