"""Each data format round-trips through read_rows, and every failure names the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.data.readers import Row, read_rows
from lmforge.errors import DataError, LmforgeError

RECORDS = [{"text": "good film", "label": "pos"}, {"text": "dull", "label": "neg"}]


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood film,pos\ndull,neg\n", encoding="utf-8")
    assert read_rows(path) == [Row(f"{path}:2", RECORDS[0]), Row(f"{path}:3", RECORDS[1])]


def test_tsv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\ngood film\tpos\ndull\tneg\n", encoding="utf-8")
    assert [row.values for row in read_rows(path)] == RECORDS


def test_csv_multiline_field_gives_next_row_its_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"line one\nline two\nline three",pos\n\ndull,neg\n',
                    encoding="utf-8")
    rows = read_rows(path)
    assert rows[0].location == f"{path}:2"
    assert rows[0].values["text"] == "line one\nline two\nline three"
    assert rows[1].location == f"{path}:6"  # blank line 5 skipped but counted


def test_csv_strips_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\ngood film,pos\n".encode("utf-8-sig"))
    assert read_rows(path)[0].values == RECORDS[0]


def test_csv_wrong_field_count_reports_every_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\na,b,c\nonly\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_rows(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: expected 2 fields, got 3",
        f"{path}:4: expected 2 fields, got 1",
    ]
    assert f"{path}:3" in str(caught.value)


def test_jsonl_round_trip_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(f"{json.dumps(RECORDS[0])}\n\n{json.dumps(RECORDS[1])}\n", encoding="utf-8")
    assert read_rows(path) == [Row(f"{path}:1", RECORDS[0]), Row(f"{path}:3", RECORDS[1])]


def test_jsonl_bad_lines_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(f'{json.dumps(RECORDS[0])}\n{{"text": "oops",\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_rows(path)
    message = str(caught.value)
    assert f"{path}:2: not valid JSON" in message
    assert f"{path}:3: expected a JSON object, got list" in message


@pytest.mark.parametrize("document", [RECORDS, {"data": RECORDS}])
def test_json_array_or_wrapped_array(tmp_path: Path, document: object) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert read_rows(path) == [Row(f"{path}:row 1", RECORDS[0]), Row(f"{path}:row 2", RECORDS[1])]


def test_json_without_a_record_list_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"a": 1}), encoding="utf-8")
    with pytest.raises(LmforgeError, match="object with one list-valued key"):
        read_rows(path)


def test_parquet_round_trip(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame(RECORDS).to_parquet(path)
    assert read_rows(path) == [Row(f"{path}:row 1", RECORDS[0]), Row(f"{path}:row 2", RECORDS[1])]


def test_hf_save_to_disk_round_trip(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "ds"
    columns = {"text": ["good film", "dull"], "label": ["pos", "neg"]}
    Dataset.from_dict(columns).save_to_disk(str(folder))
    assert read_rows(folder) == [Row(f"{folder}:row 1", RECORDS[0]),
                                 Row(f"{folder}:row 2", RECORDS[1])]


def test_hf_dataset_dict_asks_for_one_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "dd"
    split = Dataset.from_dict({"text": ["a"], "label": ["pos"]})
    DatasetDict({"train": split, "test": split}).save_to_disk(str(folder))
    with pytest.raises(LmforgeError, match="train, test") as caught:
        read_rows(folder)
    assert str(folder / "train") in str(caught.value)


def test_gb18030_file_suggests_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "zh.csv"
    text = "text,label\n这部电影非常好看，我很喜欢,正面\n服务太差了，再也不来了,负面\n"
    path.write_bytes(text.encode("gb18030"))
    with pytest.raises(LmforgeError) as caught:
        read_rows(path)
    message = str(caught.value)
    assert f"{path}:2" in message
    assert "gb18030" in message.lower()
    assert "data.encoding" in message
    assert read_rows(path, encoding="gb18030")[0].values["label"] == "正面"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LmforgeError, match="file not found"):
        read_rows(tmp_path / "nope.csv")


def test_unknown_suffix_lists_supported_formats(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(LmforgeError, match=r"\.csv, \.tsv, \.jsonl, \.json, \.parquet"):
        read_rows(path)
