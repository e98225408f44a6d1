"""PII detection and redaction: each kind, checksums, look-alikes, the labelled fixture, files, CLI."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.privacy.pii import KINDS, PLACEHOLDERS, find_pii, redact, redact_file

FIXTURE = Path(__file__).parent / "fixtures" / "pii_labelled.jsonl"

VALID_ID = "110101199003073319"
VALID_CARD = "6222021234567894"


def _found(text: str) -> list[tuple[str, str]]:
    return [(span.kind, span.text) for span in find_pii(text)]


@pytest.mark.parametrize("text, expected", [
    ("邮箱zhang_san@example.com。", [("EMAIL", "zhang_san@example.com")]),
    ("mail John.Doe+tag@mail.example.co.uk.", [("EMAIL", "John.Doe+tag@mail.example.co.uk")]),
    ("手机13800138000谢谢", [("PHONE", "13800138000")]),
    ("+86 138 0013 8000", [("PHONE", "+86 138 0013 8000")]),
    ("0086-139-1234-5678", [("PHONE", "0086-139-1234-5678")]),
    ("座机010-62751234", [("PHONE", "010-62751234")]),
    ("(0755)86013388", [("PHONE", "(0755)86013388")]),
    ("call +1 (415) 555-2671", [("PHONE", "+1 (415) 555-2671")]),
    ("身份证号11010519491231002X号", [("ID", "11010519491231002X")]),
    ("卡号4111 1111 1111 1111。", [("BANK_CARD", "4111 1111 1111 1111")]),
    ("卡号6228-4800-1234-5678-903", [("BANK_CARD", "6228-4800-1234-5678-903")]),
    ("地址192.168.1.1。", [("IP", "192.168.1.1")]),
    ("IPv6:2001:db8::1", [("IP", "2001:db8::1")]),
    ("::ffff:192.0.2.1", [("IP", "::ffff:192.0.2.1")]),
    ("https://admin:s3cret@example.com/x", [("URL_CREDENTIALS", "admin:s3cret")]),
])
def test_each_kind_is_found_in_chinese_and_english_context(text, expected):
    assert _found(text) == expected


def test_redact_replaces_spans_and_counts_them():
    text = "联系 a@b.com，电话 13800138000 / 13900139000，库 postgres://u:pw@10.0.0.5:5432/db"
    redacted, counts = redact(text)
    assert redacted == "联系 [EMAIL]，电话 [PHONE] / [PHONE]，库 postgres://[CREDENTIALS]@[IP]:5432/db"
    assert counts == Counter({"PHONE": 2, "EMAIL": 1, "URL_CREDENTIALS": 1, "IP": 1})


def test_redact_only_the_kinds_asked_for():
    redacted, counts = redact("a@b.com 13800138000", kinds={"PHONE"})
    assert redacted == "a@b.com [PHONE]" and counts == Counter({"PHONE": 1})
    with pytest.raises(LmforgeError, match="unknown PII kind"):
        redact("x", kinds={"SSN"})


def test_resident_id_checksum_and_birth_date_are_validated():
    assert _found(f"身份证{VALID_ID}") == [("ID", VALID_ID)]
    one_digit_changed = VALID_ID[:15] + "4" + VALID_ID[16:]
    assert _found(f"身份证{one_digit_changed}") == []
    assert _found("110101199013011234") == []  # checksum holds, but month 13


def test_bank_card_luhn_is_validated():
    assert _found(f"卡号{VALID_CARD}") == [("BANK_CARD", VALID_CARD)]
    assert _found(f"卡号{VALID_CARD[:-1]}0") == []


@pytest.mark.parametrize("text", [
    "订单号 202311290001234567", "2023-11-29", "2023年11月29日 14:30:00", "¥1,299.00", "$15.99",
    "v1.2.3.4", "version 10.0.0.1", "版本 1.2.3.4", "12:30:45", "验证码 123456", "12345678901",
    "00:1A:2B:3C:4D:5E", "a[::2]", "icon@2x.png", "ssh://git@github.com/a/b.git",
    "1701234567891", "2023112900012347", "13,800,138,000", "256.1.1.1", "0123-4567890",
])
def test_look_alikes_are_left_alone(text):
    assert redact(text) == (text, Counter())


def test_spans_are_sorted_non_overlapping_and_exact():
    text = "https://u:p@example.com 1.2.3.4 13800138000 a@b.com"
    spans = find_pii(text)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    assert all(text[s.start:s.end] == s.text for s in spans)


# ---------------------------------------------------------------------------- labelled fixture

def _fixture() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _scores(records: list[dict]) -> dict[str, dict[str, int]]:
    """True positives, false positives and false negatives per kind, matching (kind, text) pairs."""
    scores = {kind: Counter() for kind in KINDS}
    for record in records:
        want = Counter(tuple(pair) for pair in record["pii"])
        got = Counter(_found(record["text"]))
        for (kind, _), n in (want & got).items():
            scores[kind]["tp"] += n
        for (kind, _), n in (got - want).items():
            scores[kind]["fp"] += n
        for (kind, _), n in (want - got).items():
            scores[kind]["fn"] += n
    return scores


def test_fixture_covers_every_kind_and_enough_look_alikes():
    records = _fixture()
    per_kind = Counter(kind for record in records for kind, _ in record["pii"])
    assert all(per_kind[kind] >= 3 for kind in KINDS), per_kind
    assert sum(not record["pii"] for record in records) >= 20
    assert all(text in record["text"] for record in records for _, text in record["pii"])


def test_precision_and_recall_on_the_labelled_fixture():
    scores = _scores(_fixture())
    print(f"\n{'kind':<16}{'tp':>4}{'fp':>4}{'fn':>4}{'precision':>11}{'recall':>8}")
    for kind, s in scores.items():
        precision = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 1.0
        recall = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 1.0
        print(f"{kind:<16}{s['tp']:>4}{s['fp']:>4}{s['fn']:>4}{precision:>11.3f}{recall:>8.3f}")
    for kind, s in scores.items():
        assert s["fp"] == 0 and s["fn"] == 0, (kind, dict(s))


# ---------------------------------------------------------------------------- files and CLI

def _write_csv(path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["id", "text", "note"],
                          ["1", "我的手机 13800138000，邮箱 a@b.com", "ok"],
                          ["2", "没有隐私信息 2023-11-29", f"卡号 {VALID_CARD}"]])
    return path


def _write_jsonl(path: Path) -> Path:
    rows = [{"id": 1, "score": 0.5, "ok": True, "text": f"身份证 {VALID_ID}", "meta": None},
            {"id": 2, "score": 1.5, "ok": False, "text": "价格 ¥1,299.00",
             "messages": [{"role": "user", "content": "my ip is 10.0.0.1"}]}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_redact_file_round_trips_csv(tmp_path):
    src = _write_csv(tmp_path / "in.csv")
    before = src.read_bytes()
    report = redact_file(src, tmp_path / "out" / "red.csv", None)
    assert report == {"file": str(src), "rows": 2, "rows_changed": 2,
                      "counts": {"URL_CREDENTIALS": 0, "EMAIL": 1, "ID": 0, "BANK_CARD": 1, "PHONE": 1, "IP": 0}}
    with open(tmp_path / "out" / "red.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"id": "1", "text": "我的手机 [PHONE]，邮箱 [EMAIL]", "note": "ok"},
                    {"id": "2", "text": "没有隐私信息 2023-11-29", "note": "卡号 [BANK_CARD]"}]
    assert src.read_bytes() == before


def test_redact_file_round_trips_jsonl_keeping_non_strings(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl")
    before = src.read_bytes()
    report = redact_file(src, tmp_path / "red.jsonl", None)
    assert report["rows"] == 2 and report["rows_changed"] == 2
    assert {k: n for k, n in report["counts"].items() if n} == {"ID": 1, "IP": 1}
    rows = [json.loads(line) for line in (tmp_path / "red.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"id": 1, "score": 0.5, "ok": True, "text": "身份证 [ID]", "meta": None}
    assert rows[1]["text"] == "价格 ¥1,299.00" and rows[1]["ok"] is False and rows[1]["score"] == 1.5
    assert rows[1]["messages"] == [{"role": "user", "content": "my ip is [IP]"}]
    assert src.read_bytes() == before


def test_redact_file_only_touches_named_columns(tmp_path):
    src = _write_csv(tmp_path / "in.csv")
    report = redact_file(src, tmp_path / "red.csv", ["note"])
    assert {k: n for k, n in report["counts"].items() if n} == {"BANK_CARD": 1}
    assert "13800138000" in (tmp_path / "red.csv").read_text(encoding="utf-8")
    with pytest.raises(LmforgeError, match="no column"):
        redact_file(src, tmp_path / "red2.csv", ["txt"])


@pytest.mark.parametrize("suffix", [".tsv", ".json", ".parquet"])
def test_redact_file_writes_the_other_formats(tmp_path, suffix):
    import pyarrow
    import pyarrow.parquet

    rows = [{"n": 1, "text": "a@b.com"}, {"n": 2, "text": "none"}]
    src = tmp_path / f"in{suffix}"
    if suffix == ".parquet":
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), src)
    elif suffix == ".json":
        src.write_text(json.dumps(rows), encoding="utf-8")
    else:
        src.write_text("n\ttext\n1\ta@b.com\n2\tnone\n", encoding="utf-8")
    dst = tmp_path / f"out{suffix}"
    assert redact_file(src, dst, None)["counts"]["EMAIL"] == 1
    from lmforge.data.readers import read_rows

    values = [row.values for row in read_rows(dst)]
    assert [v["text"] for v in values] == ["[EMAIL]", "none"]
    assert values[0]["n"] == (1 if suffix != ".tsv" else "1")


def test_redact_file_refuses_to_overwrite_or_convert(tmp_path):
    src = _write_csv(tmp_path / "in.csv")
    before = src.read_bytes()
    with pytest.raises(LmforgeError, match="overwrite the input"):
        redact_file(src, src, None)
    with pytest.raises(LmforgeError, match="overwrite the input"):
        redact_file(src, tmp_path / "." / "in.csv", None)
    with pytest.raises(LmforgeError, match="cannot write"):
        redact_file(src, tmp_path / "out.txt", None)
    with pytest.raises(LmforgeError, match="input's format"):
        redact_file(src, tmp_path / "out.jsonl", None)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_nothing_is_written_when_the_input_is_malformed(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "a@b.com"}\nnot json\n', encoding="utf-8")
    with pytest.raises(LmforgeError):
        redact_file(src, tmp_path / "out.jsonl", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_cli_redact_writes_output_and_report(tmp_path):
    src = _write_csv(tmp_path / "in.csv")
    out, report = tmp_path / "red.csv", tmp_path / "report.json"
    assert main(["redact", str(src), "--out", str(out), "--report", str(report), "--columns", "text, note"]) == 0
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["rows"] == 2 and saved["counts"]["PHONE"] == 1 and saved["counts"]["BANK_CARD"] == 1
    assert PLACEHOLDERS["EMAIL"] in out.read_text(encoding="utf-8")


def test_cli_redact_refuses_to_overwrite_the_input(tmp_path, capsys):
    src = _write_csv(tmp_path / "in.csv")
    before = src.read_bytes()
    assert main(["redact", str(src), "--out", str(src)]) == 2
    assert main(["redact", str(src), "--out", str(tmp_path / "o.csv"), "--report", str(src)]) == 2
    assert capsys.readouterr().err.count("is also an input") == 2
    assert src.read_bytes() == before


def test_finetune_data_loading_redacts_when_asked(tiny_cfg, tmp_path):
    from conftest import write_csv

    from lmforge.tasks import build_task

    rows = [("很好 联系我 13812345678", "pos"), ("很差 mail me at bob@example.com", "neg")] * 10
    train = write_csv(tmp_path / "pii.csv", rows)
    plain = build_task("classification", tiny_cfg(f"data.train={train}", "data.test=")).load_data()
    assert any("13812345678" in t for t in plain.train.texts + plain.validation.texts)
    data = build_task("classification", tiny_cfg(f"data.train={train}", "data.test=", "data.redact_pii=true")).load_data()
    texts = data.train.texts + data.validation.texts
    assert not any("13812345678" in t or "bob@example.com" in t for t in texts)
    assert any("[PHONE]" in t for t in texts) and any("[EMAIL]" in t for t in texts)
