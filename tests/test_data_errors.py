"""Every kind of bad input stops `finetune` before training, names file:line and field, writes nothing."""

import json

import pytest
from conftest import write_csv

from lmforge.commands import baseline, finetune
from lmforge.errors import DataError, LmforgeError
from lmforge.tasks import build_task

GOOD = [("很好 酒店", "pos"), ("很差 房间", "neg"), ("不错 服务", "pos"), ("失望 质量", "neg")] * 5


def _expect(cfg, error, *fragments):
    with pytest.raises(error) as info:
        finetune.run(cfg)
    for fragment in fragments:
        assert fragment in str(info.value)
    from pathlib import Path

    assert not Path(cfg.output_dir).exists(), "nothing may be written on a data error"


def test_malformed_csv_row(tiny_cfg, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\n很好,pos\n很差,neg,extra\n", encoding="utf-8")
    _expect(tiny_cfg(f"data.train={path}"), DataError, f"{path}:3", "expected 2 fields")


def test_empty_text_and_missing_label(tiny_cfg, tmp_path):
    path = write_csv(tmp_path / "t.csv", GOOD + [("   ", "pos"), ("好", "")])
    _expect(tiny_cfg(f"data.train={path}"), DataError, f"{path}:22 [text]: empty text",
            f"{path}:23 [label]: missing label")


def test_unseen_validation_label(tiny_cfg, tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD)
    val = write_csv(tmp_path / "val.csv", [("还行", "neutral"), ("很好", "pos")])
    _expect(tiny_cfg(f"data.train={train}", f"data.validation={val}"), DataError,
            f"{val}:2 [label]", "'neutral' never appears in the training data")


@pytest.mark.parametrize("bad_line, message", [("{not json", "not valid JSON"),
                                               (json.dumps({"text": 5, "label": "pos"}), "[text]: expected a string")])
def test_jsonl_bad_lines(tiny_cfg, tmp_path, bad_line, message):
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"text": t, "label": label}, ensure_ascii=False) for t, label in GOOD]
    path.write_text("\n".join(lines + [bad_line]) + "\n", encoding="utf-8")
    _expect(tiny_cfg(f"data.train={path}"), DataError, f"{path}:21", message)


def test_gb18030_file_names_the_encoding(tiny_cfg, tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes("text,label\n".encode() + "".join(f"{t},{label}\n" for t, label in GOOD).encode("gb18030"))
    _expect(tiny_cfg(f"data.train={path}", "data.test="), LmforgeError, f"{path}:", "GB18030", "data.encoding")
    # and with the encoding set, the same file passes validation
    cfg = tiny_cfg(f"data.train={path}", "data.test=", "data.encoding=gb18030")
    assert len(build_task("classification", cfg).load_data().train.texts) > 0


def test_missing_file_and_missing_column(tiny_cfg, tmp_path):
    _expect(tiny_cfg(f"data.train={tmp_path / 'nope.csv'}"), LmforgeError, "file not found", "nope.csv")
    path = write_csv(tmp_path / "cols.csv", GOOD, header=("review", "label"))
    _expect(tiny_cfg(f"data.train={path}"), DataError, "text", "review")


def test_existing_output_dir_is_not_overwritten(tiny_cfg):
    cfg = tiny_cfg()
    from pathlib import Path

    out = Path(cfg.output_dir)
    out.mkdir(parents=True)
    (out / "precious.txt").write_text("keep")
    with pytest.raises(LmforgeError, match="--resume"):
        baseline.run(cfg)
    assert (out / "precious.txt").read_text() == "keep"


def test_duplicates_and_overlap_are_warnings(tiny_cfg, tmp_path, caplog):
    train = write_csv(tmp_path / "train.csv", GOOD)
    test = write_csv(tmp_path / "test.csv", GOOD[:4])
    cfg = tiny_cfg(f"data.train={train}", f"data.test={test}")
    with caplog.at_level("WARNING", logger="lmforge"):
        build_task("classification", cfg).load_data()
    text = caplog.text
    assert "16 duplicate texts" in text and "4 texts of" in text
