"""Careless and hostile input, one case per row: each gets one `error:` line naming the file, line,
field or key — no traceback, no silent acceptance — and nothing is written; or, where the input is
legitimate (a BOM, mixed newlines, emoji, a 100k-character text), it is handled right.

`lmforge baseline` runs the same config and data checks as every training command without a model,
and the model cases share one tiny classifier, so the whole file stays fast."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from lmforge.cli import main

ROWS = [(f"好评{i}", "pos") for i in range(20)] + [(f"差评{i}", "neg") for i in range(20)]


def _csv(rows: list[tuple[str, str]], header: str = "text,label\n", newline: str = "\n") -> bytes:
    return (header + newline.join(f"{t},{label}" for t, label in rows) + newline).encode("utf-8")


def _parquet(columns: dict[str, list]) -> bytes:
    import pyarrow
    import pyarrow.parquet

    sink = io.BytesIO()
    pyarrow.parquet.write_table(pyarrow.table(columns), sink)
    return sink.getvalue()


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


# ---------------------------------------------------------------------------- data files (baseline)

BAD_DATA: dict[str, tuple[str, bytes, str]] = {
    # name: (file name, bytes, expected message)
    "csv with a NUL byte": ("nul.csv", _csv(ROWS + [("差\x00评", "neg")]), "nul.csv:42 [text]: text holds a NUL byte"),
    "csv with an unterminated quote": ("quote.csv", b'text,label\n"good,pos\nbad,neg\n', "quote.csv:2"),
    "csv with a 5 MB single line": ("long.csv", _csv(ROWS) + b"x" * 5_000_000 + b",pos\n", "long.csv:42"),
    "labels 1 and 1.0 in one file": ("nums.csv", _csv([(f"a{i}", "1") for i in range(10)]
                                                  + [(f"b{i}", "1.0") for i in range(10)]
                                                  + [(f"c{i}", "0") for i in range(10)]),
                                     "labels '1', '1.0' are one number spelled differently"),
    "empty file": ("empty.csv", b"", "empty.csv: file is empty"),
    "header-only file": ("header.csv", b"text,label\n", "header.csv: no data rows"),
    "two rows, nothing to hold out": ("two.csv", _csv([("好", "pos"), ("差", "neg")]), "too few to hold out"),
    "jsonl with a non-object line": ("list.jsonl", b'{"text": "a", "label": "x"}\n[1, 2]\n',
                                     "list.jsonl:2: expected a JSON object"),
    "jsonl with trailing garbage": ("trail.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"} junk\n',
                                    "trail.jsonl:2: not valid JSON"),
    "json that is an object, not a list": ("obj.json", json.dumps({"text": "a", "label": "x"}).encode(),
                                           "obj.json: expected a JSON array"),
    "parquet with a non-string text column": ("ints.parquet", _parquet({"text": list(range(40)),
                                                                         "label": ["a", "b"] * 20}),
                                              "ints.parquet:row 1 [text]: expected a string, got int"),
    "parquet with NaN labels": ("nan.parquet", _parquet({"text": [t for t, _ in ROWS],
                                                         "label": [1.0, 0.0] * 19 + [float("nan")] * 2}),
                                "nan.parquet:row 39 [label]: missing label"),
    "labels that are floats 1.0/0.0 mixed with ints": ("mixed.jsonl", _jsonl([{"text": f"t{i}", "label": i % 2}
                                                                              for i in range(20)]
                                                                             + [{"text": f"u{i}", "label": float(i % 2)}
                                                                                for i in range(20)]),
                                                       "one number spelled differently"),
    "tsv file given a csv name": ("tabs.csv", b"text\tlabel\n" + b"".join(f"{t}\t{lab}\n".encode() for t, lab in ROWS),
                                  "a tab-separated file needs the .tsv suffix"),
    "jsonl whose lines are strings": ("strings.jsonl", b'"a"\n"b"\n', "strings.jsonl:1: expected a JSON object"),
    "a label that is a dict": ("dict.jsonl", _jsonl([{"text": t, "label": {"x": 1}} for t, _ in ROWS]),
                               "dict.jsonl:1 [label]"),
    "latin-1 file read as utf-8": ("latin.csv", "text,label\ncafé,pos\n".encode("latin-1") + _csv(ROWS, header=""),
                                   "latin.csv:2: cannot decode as utf-8"),
    "unsupported suffix": ("data.xlsx", b"PK\x03\x04", "data.xlsx: unsupported data format"),
    "a label of 1e400 (infinite)": ("inf.jsonl", "".join('{"text": "%s", "label": %s}\n' % (t, "1e400" if i % 2 else 0)
                                                         for i, (t, _) in enumerate(ROWS)).encode(),
                                    "inf.jsonl:2 [label]: label inf is not a finite number"),
    "a NaN literal as a label": ("nan.jsonl", "".join('{"text": "%s", "label": %s}\n' % (t, "NaN" if i == 3 else i % 2)
                                                      for i, (t, _) in enumerate(ROWS)).encode(),
                                 "nan.jsonl:4 [label]: missing label"),
    "a csv header naming a column twice": ("twice.csv", _csv(ROWS, header="text,text,label\n"),
                                           "twice.csv:1: duplicate column name(s) in header: text"),
    "a json file in UTF-16": ("utf16.json", json.dumps([{"text": t, "label": lab} for t, lab in ROWS],
                                                       ensure_ascii=False).encode("utf-16"),
                              "utf16.json:1: cannot decode as utf-8 (byte 0xff); it looks like UTF_16, set "
                              "data.encoding=utf_16"),
    "jsonl text with an unpaired surrogate": ("sur.jsonl", "".join(  # json.dumps escapes the surrogate as \\ud800
        json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS + [("bad \ud800", "pos")]).encode(),
        "sur.jsonl:41 [text]: text holds an unpaired surrogate (U+D800)"),
}


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_bad_data_gets_one_clear_error_and_nothing_is_written(name, tmp_path, capsys):
    file_name, content, message = BAD_DATA[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    _refused(capsys, ["baseline", f"data.train={path}", f"output_dir={tmp_path / 'out'}"], message, tmp_path / "out")


GOOD_DATA: dict[str, tuple[str, bytes]] = {
    "csv with a BOM": ("bom.csv", b"\xef\xbb\xbf" + _csv(ROWS)),
    "csv with mixed newlines": ("mixed.csv", b"text,label\r\n" + b"".join(
        f"{t},{lab}".encode() + [b"\r\n", b"\n", b"\r"][i % 3] for i, (t, lab) in enumerate(ROWS))),
    "emoji, zero-width and right-to-left text": ("uni.csv", _csv([(f"{t} 😀\u200b שלום مرحبا \u202e", lab)
                                                                  for t, lab in ROWS])),
    "a 100k-character text": ("huge.csv", _csv(ROWS[:-1] + [("长" * 100_000, "neg")])),
    "a json object wrapping the rows": ("wrapped.json", json.dumps({"data": [{"text": t, "label": lab}
                                                                              for t, lab in ROWS]}).encode()),
    "a file name with spaces, CJK and emoji": ("训练 数据 😀.csv", _csv(ROWS)),
    "jsonl with a BOM": ("bom.jsonl", b"\xef\xbb\xbf" + _jsonl([{"text": t, "label": lab} for t, lab in ROWS])),
    "a quoted tab inside a tsv field": ("quoted.tsv", b"text\tlabel\n" + b"".join(f'"{t}\tmore"\t{lab}\n'.encode()
                                                                               for t, lab in ROWS)),
}


@pytest.mark.parametrize("name", list(GOOD_DATA))
def test_legitimate_odd_data_is_read_right(name, tmp_path, capsys):
    file_name, content = GOOD_DATA[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    assert main(["baseline", f"data.train={path}", f"output_dir={tmp_path / 'out'}"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"pos", "neg"}  # the header was read (BOM gone), two classes, no stray rows


def test_a_folder_where_a_file_is_expected(tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    _refused(capsys, ["baseline", f"data.train={tmp_path / 'dir.csv'}", f"output_dir={tmp_path / 'out'}"],
             "dir.csv is a folder", tmp_path / "out")


# ---------------------------------------------------------------------------- config values

@pytest.mark.parametrize("override, message", [
    ("train.lr=nan", "'train.lr': expected a finite number"),
    ("train.lr=-1", "'train.lr': must be at least 0"),
    ("train.lr=inf", "'train.lr': expected a finite number"),
    ("train.batch_size=-1", "'train.batch_size': must be at least 0"),
    ("train.grad_accum=0", "'train.grad_accum': must be at least 1"),
    ("train.max_steps=-1", "'train.max_steps': must be at least 0"),
    ("train.epochs=-2", "'train.epochs': must be at least 0"),
    ("train.precision=fp8", "'train.precision': must be one of"),
    ("train.schedule=exponential", "'train.schedule': must be one of"),
    ("train.seed=abc", "'train.seed': expected int"),
    ("train.warmup_ratio=2", "'train.warmup_ratio': must be at most 1"),
    ("model.max_length=0", "'model.max_length': must be at least 1"),
    ("data.validation_fraction=1.5", "'data.validation_fraction': must be at most 0.9"),
    ("privacy.dp.target_epsilon=-1", "'privacy.dp.target_epsilon': must be at least 0"),
    ("classification.threshold=2", "'classification.threshold': must be at most 1"),
    ("train.nosuchkey=1", "train.nosuchkey"),
    ("task=nosuchtask", "nosuchtask"),
    ("model.preset=huge", "huge"),
    ("data.encoding=klingon", "unknown encoding 'klingon'"),
    ("output_dir=", "output_dir is empty"),
])
def test_bad_values_are_refused_before_the_output_folder_exists(override, message, tmp_path, capsys, tiny):
    data = tmp_path / "train.csv"
    data.write_bytes(_csv(ROWS))
    _refused(capsys, ["finetune", f"data.train={data}", f"output_dir={tmp_path / 'out'}", "model.preset=tiny",
                      f"model.tokenizer={tiny / 'tok'}", override], message, tmp_path / "out")


@pytest.mark.parametrize("content, key, value", [
    ("train:\n  freeze_embeddings: yes\n", "freeze_embeddings", True),  # YAML 1.1 spells true this way too
    ("train:\n  freeze_embeddings: \"false\"\n", "freeze_embeddings", False),  # a quoted false is still false
    ("train:\n  lr: 3e-5\n", "lr", 3e-5),  # YAML reads 3e-5 (no dot) as a string
    ("# every option at its default\n", "lr", 0.0),
    ("\ufefftrain:\n  lr: 1e-3\n", "lr", 1e-3),  # a BOM from a Windows editor
])
def test_legitimate_odd_yaml_is_read_right(content, key, value, tmp_path):
    from lmforge import config

    (tmp_path / "cfg.yaml").write_text(content)
    assert getattr(config.load(tmp_path / "cfg.yaml").train, key) == value


@pytest.mark.parametrize("content, message", [("- a\n- b\n", "mapping"), ("train:\n\tlr: 1\n", "cfg.yaml:2"),
                                              ("train: [1, 2]\n", "'train'"), ("\x00\x01", "cfg.yaml"),
                                              ("train:\n  lr: 1\n  lr: 2\n", "cfg.yaml:3:3: not valid YAML: key 'lr' "
                                                                             "is given twice")])
def test_a_yaml_file_that_is_a_list_has_a_tab_or_is_binary(content, message, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(content)
    _refused(capsys, ["baseline", str(cfg)], message)


# ---------------------------------------------------------------------------- output paths

def test_output_dir_that_is_a_file(tmp_path, capsys):
    data, taken = tmp_path / "train.csv", tmp_path / "taken.txt"
    data.write_bytes(_csv(ROWS))
    taken.write_text("keep me")
    _refused(capsys, ["baseline", f"data.train={data}", f"output_dir={taken}", "overwrite=true"], "output_dir")
    assert taken.read_text() == "keep me"


def test_output_dir_under_a_file(tmp_path, capsys):
    data, taken = tmp_path / "train.csv", tmp_path / "taken.txt"
    data.write_bytes(_csv(ROWS))
    taken.write_text("keep me")
    _refused(capsys, ["baseline", f"data.train={data}", f"output_dir={taken / 'run'}"], "which is a file, not a folder")


def test_output_dir_in_a_place_nobody_may_write(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_bytes(_csv(ROWS))
    _refused(capsys, ["baseline", f"data.train={data}", "output_dir=/proc/lmforge-run"], "/proc/lmforge-run")


def test_resume_without_a_checkpoint_creates_nothing(tmp_path, capsys, tiny):
    _refused(capsys, ["finetune", f"data.train={tiny / 'train.csv'}", f"output_dir={tmp_path / 'run'}",
                      "model.preset=tiny", f"model.tokenizer={tiny / 'tok'}", "--resume"], "no checkpoint",
             tmp_path / "run")


# ---------------------------------------------------------------------------- model folders

def _damaged(tmp_path: Path, model: Path, damage: Callable[[Path], None]) -> Path:
    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    damage(folder)
    return folder


def _plant_pickle(folder: Path) -> None:
    """Only a pickle checkpoint, whose unpickling would create `pwned` beside the folder."""
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(str(folder.parent / "pwned"))))


class _Marker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


MODEL_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupt config.json": (lambda f: (f / "config.json").write_text("{not json"), "config.json"),
    "truncated model.safetensors": (lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:1000]), "model.safetensors"),
    "garbage model.safetensors": (lambda f: (f / "model.safetensors").write_bytes(os.urandom(4096)),
                                  "model.safetensors"),
    "only a pickle pytorch_model.bin": (_plant_pickle, "pytorch_model.bin"),
    "no weights at all": (lambda f: (f / "model.safetensors").unlink(), "no model weights"),
}


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("name", list(MODEL_DAMAGE))
def test_a_damaged_model_folder_is_refused_in_one_line(name, command, tmp_path, capsys, tiny, tiny_classifier):
    damage, message = MODEL_DAMAGE[name]
    folder = _damaged(tmp_path, tiny_classifier, damage)
    out = tmp_path / ("pred.jsonl" if command == "predict" else "eval")
    flags = ["--input", str(tiny / "test.csv"), "--output", str(out)] if command == "predict" else \
        ["--data", str(tiny / "test.csv"), "--out", str(out)]
    _refused(capsys, [command, str(folder), *flags], message, out)
    assert not (tmp_path / "pwned").exists()  # the pickle was never loaded


# ---------------------------------------------------------------------------- commands, one row each

@dataclass
class Case:
    """`argv` with {tmp}, {model} (a tiny classifier), {tiny} (its data and tok/) filled in; `files` are
    written under tmp first (bytes, or a function making the path: a pipe, a link); `unwritten`
    (templates too) must not exist afterwards."""

    argv: list[str]
    message: str
    files: dict[str, bytes | Callable[[Path], None]] = field(default_factory=dict)
    unwritten: list[str] = field(default_factory=list)


def _to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _truncated_gzip(path: Path) -> None:
    path.write_bytes(gzip.compress(("一段足够长的中文文本，用来测试截断的压缩文件。\n" * 2000).encode())[:300])


HEADER_ONLY = {"h.csv": b"text,label\n"}
CORPUS = {"raw/a.txt": "\n".join(f"第{i}篇文档，内容足够长，可以通过长度过滤。" for i in range(50)).encode()}

CASES: dict[str, Case] = {
    # evaluate
    "evaluate on a header-only file": Case(["evaluate", "{model}", "--data", "{tmp}/h.csv", "--out", "{tmp}/o"],
                                           "h.csv: no data rows", HEADER_ONLY, ["{tmp}/o"]),
    "evaluate --out that is a file": Case(["evaluate", "{model}", "--data", "{tiny}/test.csv", "--out", "{tmp}/f"],
                                          "--out {tmp}/f is an existing file", {"f": b"x"}),
    "evaluate --batch-size 0": Case(["evaluate", "{model}", "--data", "{tiny}/test.csv", "--out", "{tmp}/o",
                                     "--batch-size", "0"], "argument --batch-size: must be at least 1", {}, ["{tmp}/o"]),
    "evaluate a model folder that does not exist": Case(["evaluate", "{tmp}/nope", "--data", "{tiny}/test.csv",
                                                         "--out", "{tmp}/o"], "{tmp}/nope", {}, ["{tmp}/o"]),
    "evaluate an empty folder as a model": Case(["evaluate", "{tmp}/empty", "--data", "{tiny}/test.csv", "--out",
                                                 "{tmp}/o"], "{tmp}/empty", {"empty/.keep": b""}, ["{tmp}/o"]),
    "evaluate on a file without labels": Case(["evaluate", "{model}", "--data", "{tmp}/t.csv", "--out", "{tmp}/o"],
                                              "no row has column 'label'", {"t.csv": b"text\na\nb\n"}, ["{tmp}/o"]),
    # predict
    "predict --output that is a folder": Case(["predict", "{model}", "--input", "{tiny}/test.csv", "--output",
                                               "{tmp}/d.jsonl"], "is a folder, not a file", {"d.jsonl/x": b"x"}),
    "predict --batch-size 0": Case(["predict", "{model}", "--input", "{tiny}/test.csv", "--output", "{tmp}/p.jsonl",
                                    "--batch-size", "0"], "argument --batch-size: must be at least 1", {},
                                   ["{tmp}/p.jsonl"]),
    "predict --batch-size -3": Case(["predict", "{model}", "--input", "{tiny}/test.csv", "--output", "{tmp}/p.jsonl",
                                     "--batch-size", "-3"], "argument --batch-size: must be at least 1", {},
                                    ["{tmp}/p.jsonl"]),
    "predict on an input with no rows": Case(["predict", "{model}", "--input", "{tmp}/h.csv", "--output",
                                              "{tmp}/p.jsonl"], "h.csv: no data rows", HEADER_ONLY, ["{tmp}/p.jsonl"]),
    "predict on an input without a text column": Case(["predict", "{model}", "--input", "{tmp}/t.csv", "--output",
                                                       "{tmp}/p.jsonl"], "no row has column 'text'",
                                                      {"t.csv": b"body\na\n"}, ["{tmp}/p.jsonl"]),
    "predict --output with a .txt suffix": Case(["predict", "{model}", "--input", "{tiny}/test.csv", "--output",
                                                 "{tmp}/p.txt"], "--output must end in .jsonl or .csv", {},
                                                ["{tmp}/p.txt"]),
    "predict --precision with an empty text": Case(["predict", "{model}", "--input", "{tmp}/e.jsonl", "--output",
                                                    "{tmp}/p.jsonl"], "e.jsonl:2 [text]: empty text",
                                                   {"e.jsonl": b'{"text": "a"}\n{"text": "  "}\n'}, ["{tmp}/p.jsonl"]),
    # corpus build
    "corpus build --min-chars -5": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c", "--min-chars", "-5"],
                                        "argument --min-chars: must be at least 0", CORPUS, ["{tmp}/c"]),
    "corpus build --max-chars -1": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c", "--max-chars", "-1"],
                                        "argument --max-chars: must be at least 0", CORPUS, ["{tmp}/c"]),
    "corpus build --workers 0": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c", "--workers", "0"],
                                     "argument --workers: must be at least 1", CORPUS, ["{tmp}/c"]),
    "corpus build of a missing input": Case(["corpus", "build", "{tmp}/nope", "--out", "{tmp}/c"],
                                            "corpus input not found: {tmp}/nope", {}, ["{tmp}/c"]),
    "corpus build --encoding klingon": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c", "--encoding",
                                             "klingon"], "unknown encoding 'klingon'", CORPUS, ["{tmp}/c"]),
    "corpus build of a fake .gz with --strict": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c", "--strict"],
                                                     "b.txt.gz: not a readable gzip file",
                                                     {**CORPUS, "raw/b.txt.gz": b"not gzip at all"}, ["{tmp}/c"]),
    "corpus build of a jsonl with an unpaired surrogate": Case(["corpus", "build", "{tmp}/s.jsonl", "--out", "{tmp}/c",
                                                                "--strict"], "s.jsonl:2: text holds an unpaired surrogate",
                                                               {"s.jsonl": b'{"text": "fine text here"}\n'
                                                                           b'{"text": "bad \\udc00"}\n'}, ["{tmp}/c"]),
    "corpus build where every document is too short": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c",
                                                            "--min-chars", "1000"], "no documents left", CORPUS,
                                                           ["{tmp}/c"]),
    "corpus build of a jsonl without the text field": Case(["corpus", "build", "{tmp}/x.jsonl", "--out", "{tmp}/c",
                                                            "--strict"], "x.jsonl:1: expected a string or an object",
                                                           {"x.jsonl": b'{"body": "abc"}\n'}, ["{tmp}/c"]),
    # tokenizer train
    "tokenizer train --vocab-size 0": Case(["tokenizer", "train", "{tmp}/raw", "--out", "{tmp}/t", "--vocab-size",
                                            "0"], "argument --vocab-size: must be at least 100", CORPUS, ["{tmp}/t"]),
    "tokenizer train on an empty folder": Case(["tokenizer", "train", "{tmp}/none", "--out", "{tmp}/t"],
                                               "no documents", {"none/.keep": b""}, ["{tmp}/t"]),
    # pretrain
    "pretrain on a binary file": Case(["pretrain", "data.train={tmp}/bin.txt", "output_dir={tmp}/o",
                                       "model.preset=tiny", "model.tokenizer={tiny}/tok"], "bin.txt: binary file",
                                      {"bin.txt": b"\x00\x01\x02" * 100}, ["{tmp}/o"]),
    "pretrain objective=xyz": Case(["pretrain", "objective=xyz", "data.train={tmp}/raw", "output_dir={tmp}/o"],
                                   "'objective': must be one of", CORPUS, ["{tmp}/o"]),
    "pretrain pretrain.workers=0": Case(["pretrain", "pretrain.workers=0", "data.train={tmp}/raw",
                                         "output_dir={tmp}/o"], "'pretrain.workers': must be at least 1", CORPUS,
                                        ["{tmp}/o"]),
    "pretrain model.max_length=2": Case(["pretrain", "data.train={tmp}/raw", "output_dir={tmp}/o", "model.preset=tiny",
                                         "model.tokenizer={tiny}/tok", "model.max_length=2"],
                                        "'model.max_length': 2 leaves no text in a mlm block", CORPUS, ["{tmp}/o"]),
    "pretrain on a corpus too small for one block": Case(["pretrain", "data.train={tmp}/raw", "output_dir={tmp}/o",
                                                          "model.preset=tiny", "model.tokenizer={tiny}/tok",
                                                          "model.max_length=512"], "do not fill one block", CORPUS,
                                                         ["{tmp}/o"]),
    "pretrain on an empty corpus folder": Case(["pretrain", "data.train={tmp}/none", "output_dir={tmp}/o",
                                                "model.preset=tiny", "model.tokenizer={tiny}/tok"], "no documents",
                                               {"none/.keep": b""}, ["{tmp}/o"]),
    # baseline
    "baseline whose text column is its label column": Case(["baseline", "data.train={tiny}/train.csv",
                                                            "output_dir={tmp}/o", "data.text_column=label"],
                                                           "data.text_column and data.label_column are both 'label'",
                                                           {}, ["{tmp}/o"]),
    "baseline for a task without one": Case(["baseline", "task=pretrain", "data.train={tmp}/raw", "output_dir={tmp}/o"],
                                            "task=pretrain has no non-neural baseline", CORPUS, ["{tmp}/o"]),
    # encrypt / decrypt
    "encrypt a missing file": Case(["encrypt", "{tmp}/nope.csv", "--key-file", "{tmp}/k"], "{tmp}/nope.csv", {},
                                   ["{tmp}/k", "{tmp}/nope.csv.enc"]),
    "decrypt a file that was never encrypted": Case(["decrypt", "{tmp}/plain.csv.enc", "--key-file", "{tmp}/k"],
                                                    "plain.csv.enc", {"plain.csv.enc": b"text,label\na,b\n",
                                                                      "k": b"A" * 43 + b"="}, ["{tmp}/plain.csv"]),
    "decrypt with a key file that is not a key": Case(["decrypt", "{tmp}/plain.csv.enc", "--key-file", "{tmp}/k"],
                                                      "{tmp}/k", {"plain.csv.enc": b"x" * 100, "k": b"short"},
                                                      ["{tmp}/plain.csv"]),
    # redact
    "redact --columns that do not exist": Case(["redact", "{tiny}/test.csv", "--out", "{tmp}/r.csv", "--columns",
                                                "nosuch"], "nosuch", {}, ["{tmp}/r.csv"]),
    "redact a file of an unknown format": Case(["redact", "{tmp}/a.txt", "--out", "{tmp}/r.txt"], "'.txt'",
                                               {"a.txt": b"hello a@b.com\n"}, ["{tmp}/r.txt"]),
    "redact --report where nothing can be written": Case(["redact", "{tiny}/test.csv", "--out", "{tmp}/r.csv",
                                                          "--report", "/proc/lmforge-report.json"],
                                                         "--report /proc/lmforge-report.json: cannot write in /proc", {},
                                                         ["{tmp}/r.csv"]),
    "redact into a different format": Case(["redact", "{tiny}/test.csv", "--out", "{tmp}/r.jsonl"], "r.jsonl", {},
                                           ["{tmp}/r.jsonl"]),
    # kb
    "kb build of a missing source": Case(["kb", "build", "{tmp}/nope.jsonl", "--out", "{tmp}/kb", "--encoder",
                                          "{model}"], "{tmp}/nope.jsonl", {}, ["{tmp}/kb"]),
    "kb ask a folder that is no index": Case(["kb", "ask", "{tmp}/empty", "what?"], "{tmp}/empty",
                                             {"empty/.keep": b""}),
    "kb ask without a question": Case(["kb", "ask", "{tmp}/empty"], "kb ask needs INDEX and a question",
                                      {"empty/.keep": b""}),
    "kb ask -k 0": Case(["kb", "ask", "{tmp}/empty", "what?", "-k", "0"], "argument -k: must be at least 1",
                        {"empty/.keep": b""}),
    # quantize
    "quantize a folder that is no model": Case(["quantize", "{tmp}/empty", "--method", "int8-dynamic", "--out",
                                                "{tmp}/q"], "{tmp}/empty", {"empty/.keep": b""}, ["{tmp}/q"]),
    # explain
    "explain with nothing to explain": Case(["explain", "{model}"], "--text"),
    "explain an empty text": Case(["explain", "{model}", "--text", ""], "--text is empty"),
    "explain --ig-steps 0": Case(["explain", "{model}", "--text", "好", "--method", "ig", "--ig-steps", "0"],
                                 "argument --ig-steps: must be at least 1"),
    # trim-vocab
    "trim-vocab --min-count 0": Case(["trim-vocab", "{model}", "--data", "{tiny}/train.csv", "--out", "{tmp}/t",
                                      "--min-count", "0"], "argument --min-count: must be at least 1", {}, ["{tmp}/t"]),
    "trim-vocab --columns that do not exist": Case(["trim-vocab", "{model}", "--data", "{tiny}/train.csv", "--out",
                                                    "{tmp}/t", "--columns", "nosuch"], "no column 'nosuch'", {},
                                                   ["{tmp}/t"]),
    # sweep
    "sweep a space that is not a range": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=abc",
                                               "--out", "{tmp}/s"], "train.lr", {}, ["{tmp}/s"]),
    "sweep a key that does not exist": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.nope=1..2",
                                             "--out", "{tmp}/s"], "train.nope", {}, ["{tmp}/s"]),
    "sweep --space file that is not valid YAML": Case(["sweep", "data.train={tiny}/train.csv", "--space",
                                                       "{tmp}/space.yaml", "--out", "{tmp}/s"],
                                                      "space.yaml:2:1: not valid YAML",
                                                      {"space.yaml": b"train.lr: [1e-5, 1e-4\n"}, ["{tmp}/s"]),
    "sweep --trials 0": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=1e-5..1e-3:log",
                              "--trials", "0", "--out", "{tmp}/s"], "argument --trials: must be at least 1", {},
                             ["{tmp}/s"]),
    "sweep a range upside down": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=1e-3..1e-5:log",
                                       "--out", "{tmp}/s"], "train.lr", {}, ["{tmp}/s"]),
    "sweep a range without its upper end": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=1e-3..",
                                                 "--out", "{tmp}/s"], "'1e-3..' is neither a range", {}, ["{tmp}/s"]),
    "sweep a range of words": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=a..b", "--out",
                                    "{tmp}/s"], "'a..b' is not a numeric range", {}, ["{tmp}/s"]),
    "sweep a log range from 0": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=0..1e-3:log",
                                      "--out", "{tmp}/s"], "a :log range needs a positive lower end", {}, ["{tmp}/s"]),
    "sweep a key with an empty value": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=", "--out",
                                             "{tmp}/s"], "'' is neither a range", {}, ["{tmp}/s"]),
    "sweep a choice the key does not accept": Case(["sweep", "data.train={tiny}/train.csv", "--space",
                                                    "train.lr=1e-3,abc", "--out", "{tmp}/s"],
                                                   "config key 'train.lr': expected float, got 'abc'", {}, ["{tmp}/s"]),
    "sweep a range reaching below the key's minimum": Case(["sweep", "data.train={tiny}/train.csv", "--space",
                                                            "train.grad_accum=0..2", "--out", "{tmp}/s"],
                                                           "'train.grad_accum': must be at least 1, got 0", {},
                                                           ["{tmp}/s"]),
    "sweep a range over a text key": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.precision=1..3",
                                           "--out", "{tmp}/s"], "'train.precision' is not a number", {}, ["{tmp}/s"]),
    "sweep a choice outside the key's options": Case(["sweep", "data.train={tiny}/train.csv", "--space",
                                                      "train.schedule=linear,exponential", "--out", "{tmp}/s"],
                                                     "'train.schedule': must be one of", {}, ["{tmp}/s"]),
    "sweep --space file that is a list": Case(["sweep", "data.train={tiny}/train.csv", "--space", "{tmp}/sp.yaml",
                                               "--out", "{tmp}/s"], "expected a mapping of config keys",
                                              {"sp.yaml": b"- a\n- b\n"}, ["{tmp}/s"]),
    "sweep --max-time -1": Case(["sweep", "data.train={tiny}/train.csv", "--space", "train.lr=1e-4..1e-3", "--out",
                                 "{tmp}/s", "--max-time", "-1"], "argument --max-time: must be at least 0", {},
                                ["{tmp}/s"]),
    # tokenizer train, corpus build (more)
    "tokenizer train --vocab-size 1": Case(["tokenizer", "train", "{tmp}/raw", "--out", "{tmp}/t", "--vocab-size",
                                            "1"], "argument --vocab-size: must be at least 100", CORPUS, ["{tmp}/t"]),
    "tokenizer train --kind unigram": Case(["tokenizer", "train", "{tmp}/raw", "--out", "{tmp}/t", "--kind", "unigram"],
                                           "argument --kind: invalid choice: 'unigram'", CORPUS, ["{tmp}/t"]),
    "tokenizer train on binary files only": Case(["tokenizer", "train", "{tmp}/bin", "--out", "{tmp}/t"],
                                                 "a.txt: binary file (NUL bytes)", {"bin/a.txt": b"\x00\x01\x02" * 300},
                                                 ["{tmp}/t"]),
    "tokenizer train --out onto its input file": Case(["tokenizer", "train", "{tmp}/raw/a.txt", "--out",
                                                       "{tmp}/raw/a.txt"], "is also an input of this command", CORPUS),
    "corpus build of binary files only": Case(["corpus", "build", "{tmp}/bin", "--out", "{tmp}/c"],
                                              "2 of 2 files skipped, e.g. {tmp}/bin/a.txt: binary file",
                                              {"bin/a.txt": b"\x00\x01\x02" * 300, "bin/b.bin": b"\x00" * 100},
                                              ["{tmp}/c"]),
    "corpus build of a truncated gzip": Case(["corpus", "build", "{tmp}/t.txt.gz", "--out", "{tmp}/c"],
                                             "1 of 1 files skipped, e.g. {tmp}/t.txt.gz: not a readable gzip file",
                                             {"t.txt.gz": _truncated_gzip}, ["{tmp}/c"]),
    "corpus build of a truncated gzip with --strict": Case(["corpus", "build", "{tmp}/t.txt.gz", "--out", "{tmp}/c",
                                                            "--strict"], "t.txt.gz: not a readable gzip file",
                                                           {"t.txt.gz": _truncated_gzip}, ["{tmp}/c"]),
    "corpus build --min-chars above --max-chars": Case(["corpus", "build", "{tmp}/raw", "--out", "{tmp}/c",
                                                        "--min-chars", "100", "--max-chars", "10"],
                                                       "--min-chars 100 is above --max-chars 10", CORPUS, ["{tmp}/c"]),
    "corpus build of a named pipe": Case(["corpus", "build", "{tmp}/f.txt", "--out", "{tmp}/c", "--strict"],
                                         "f.txt is a named pipe, not a data file", {"f.txt": os.mkfifo}, ["{tmp}/c"]),
    "corpus build of a link to /dev/zero": Case(["corpus", "build", "{tmp}/z.txt", "--out", "{tmp}/c"],
                                                "z.txt is a character device, not a data file",
                                                {"z.txt": _to_dev_zero}, ["{tmp}/c"]),
    # trim-vocab, explain (more)
    "trim-vocab on a header-only file": Case(["trim-vocab", "{model}", "--data", "{tmp}/h.csv", "--out", "{tmp}/t"],
                                             "h.csv: no data rows", HEADER_ONLY, ["{tmp}/t"]),
    "trim-vocab --out onto the model": Case(["trim-vocab", "{model}", "--data", "{tiny}/train.csv", "--out", "{model}",
                                             "--overwrite"], "is also an input of this command"),
    "trim-vocab --data naming nothing": Case(["trim-vocab", "{model}", "--data", ",", "--out", "{tmp}/t"],
                                             "--data names nothing", {}, ["{tmp}/t"]),
    "explain --method lime": Case(["explain", "{model}", "--text", "好", "--method", "lime"],
                                  "argument --method: invalid choice: 'lime'"),
    "explain a text of spaces": Case(["explain", "{model}", "--text", "   "], "--text is empty"),
    "explain --input without the text column": Case(["explain", "{model}", "--input", "{tmp}/b.csv", "--out",
                                                     "{tmp}/e"], "b.csv [text]: no row has column 'text'",
                                                    {"b.csv": b"body\nx\n"}, ["{tmp}/e"]),
    "explain --text and --input together": Case(["explain", "{model}", "--text", "好", "--input", "{tiny}/test.csv"],
                                                "give exactly one of --text, --input FILE"),
    "explain --global without --data": Case(["explain", "{model}", "--global"], "--global needs --data FILE"),
    # predict (more)
    "predict --input .xlsx": Case(["predict", "{model}", "--input", "{tmp}/a.xlsx", "--output", "{tmp}/p.jsonl"],
                                  "a.xlsx: unsupported data format '.xlsx'", {"a.xlsx": b"PK\x03\x04"},
                                  ["{tmp}/p.jsonl"]),
    "predict --input a folder named like a csv": Case(["predict", "{model}", "--input", "{tmp}/d.csv", "--output",
                                                       "{tmp}/p.jsonl"], "d.csv is a folder but not one written by",
                                                      {"d.csv/x": b"x"}, ["{tmp}/p.jsonl"]),
    "predict --input a named pipe": Case(["predict", "{model}", "--input", "{tmp}/f.csv", "--output", "{tmp}/p.jsonl"],
                                         "f.csv is a named pipe, not a data file", {"f.csv": os.mkfifo},
                                         ["{tmp}/p.jsonl"]),
    "predict --input a link to /dev/zero": Case(["predict", "{model}", "--input", "{tmp}/z.jsonl", "--output",
                                                 "{tmp}/p.jsonl"], "z.jsonl is a character device",
                                                {"z.jsonl": _to_dev_zero}, ["{tmp}/p.jsonl"]),
    "predict --output onto its input": Case(["predict", "{model}", "--input", "{tmp}/i.csv", "--output", "{tmp}/i.csv",
                                             "--overwrite"], "is also an input of this command", {"i.csv": _csv(ROWS)}),
    "predict with a file as the model": Case(["predict", "{tmp}/m.bin", "--input", "{tiny}/test.csv", "--output",
                                              "{tmp}/p.jsonl"], "not a model folder", {"m.bin": b"x"},
                                             ["{tmp}/p.jsonl"]),
    # quantize, export-onnx
    "quantize --out onto the model": Case(["quantize", "{model}", "--method", "int8-dynamic", "--out", "{model}",
                                           "--overwrite"], "is also an input of this command"),
    "export-onnx --out onto the model": Case(["export-onnx", "{model}", "--out", "{model}", "--overwrite"],
                                             "is also an input of this command"),
    "export-onnx --texts that do not exist": Case(["export-onnx", "{model}", "--out", "{tmp}/x", "--texts",
                                                   "{tmp}/nope.csv"], "file not found: {tmp}/nope.csv", {},
                                                  ["{tmp}/x"]),
    # config files and overrides
    "a config file that is a number": Case(["baseline", "{tmp}/c.yaml"], "expected a mapping of options",
                                           {"c.yaml": b"42\n"}),
    "a config file that does not exist": Case(["baseline", "{tmp}/nope.yaml"], "config file not found"),
    "train.lr: null in YAML": Case(["baseline", "{tmp}/c.yaml", "data.train={tiny}/train.csv", "output_dir={tmp}/o"],
                                   "'train.lr': expected float, got None", {"c.yaml": b"train:\n  lr: null\n"},
                                   ["{tmp}/o"]),
    "train.lr given a mapping in YAML": Case(["baseline", "{tmp}/c.yaml", "data.train={tiny}/train.csv",
                                              "output_dir={tmp}/o"], "'train.lr': expected float, got {{'a': 1}}",
                                             {"c.yaml": b"train:\n  lr: {a: 1}\n"}, ["{tmp}/o"]),
    "an override with two = signs": Case(["baseline", "data.train={tiny}/train.csv", "output_dir={tmp}/o",
                                          "train.lr=1e-3=4"], "'train.lr': expected float, got '1e-3=4'", {},
                                         ["{tmp}/o"]),
    "an override setting a whole group": Case(["baseline", "data.train={tiny}/train.csv", "output_dir={tmp}/o",
                                               "train=1"], "'train' is a group of options", {}, ["{tmp}/o"]),
    "an override without a key": Case(["baseline", "data.train={tiny}/train.csv", "output_dir={tmp}/o", "=1"],
                                      "override '=1' is not of the form key=value", {}, ["{tmp}/o"]),
    "data.validation_fraction=1.0": Case(["baseline", "data.train={tiny}/train.csv", "output_dir={tmp}/o",
                                          "data.validation_fraction=1.0"],
                                         "'data.validation_fraction': must be at most 0.9", {}, ["{tmp}/o"]),
    "data.validation_fraction=0 and no validation file": Case(["baseline", "data.train={tiny}/train.csv",
                                                               "output_dir={tmp}/o", "data.validation_fraction=0"],
                                                              "data.validation_fraction=0: the share of data.train",
                                                              {}, ["{tmp}/o"]),
    "model.max_length beyond the model's positions": Case(["finetune", "data.train={tiny}/train.csv",
                                                           "output_dir={tmp}/o", "model.path={model}",
                                                           "model.max_length=100000"],
                                                          "'model.max_length': 100000 is above the 512 positions", {},
                                                          ["{tmp}/o"]),
    # training data (more)
    "labels that are all one class": Case(["baseline", "data.train={tmp}/one.csv", "output_dir={tmp}/o"],
                                          "one.csv [label]: need at least 2 classes, found ['pos']",
                                          {"one.csv": _csv([(t, "pos") for t, _ in ROWS])}, ["{tmp}/o"]),
    "a text column of empty strings": Case(["baseline", "data.train={tmp}/e.csv", "output_dir={tmp}/o"],
                                           "e.csv:2 [text]: empty text", {"e.csv": _csv([("", lab) for _, lab in ROWS])},
                                           ["{tmp}/o"]),
    "a jsonl text column of spaces": Case(["baseline", "data.train={tmp}/e.jsonl", "output_dir={tmp}/o"],
                                          "e.jsonl:1 [text]: empty text",
                                          {"e.jsonl": _jsonl([{"text": "  ", "label": lab} for _, lab in ROWS])},
                                          ["{tmp}/o"]),
    "data.text_column empty": Case(["baseline", "data.train={tiny}/train.csv", "output_dir={tmp}/o",
                                    "data.text_column="], "no row has column ''", {}, ["{tmp}/o"]),
    "data.train a named pipe": Case(["baseline", "data.train={tmp}/f.csv", "output_dir={tmp}/o"],
                                    "f.csv is a named pipe, not a data file", {"f.csv": os.mkfifo}, ["{tmp}/o"]),
    "data.train a link to /dev/zero": Case(["baseline", "data.train={tmp}/z.csv", "output_dir={tmp}/o"],
                                           "z.csv is a character device, not a data file", {"z.csv": _to_dev_zero},
                                           ["{tmp}/o"]),
    "output_dir starting with ~": Case(["baseline", "data.train={tiny}/train.csv", "output_dir=~/lmforge-no-such-run"],
                                       "lmforge does not expand '~'", {}, ["~/lmforge-no-such-run"]),
    "data.train with a glob": Case(["baseline", "data.train={tiny}/*.csv", "output_dir={tmp}/o"],
                                   "file not found: {tiny}/*.csv", {}, ["{tmp}/o"]),
    "data.test a header-only file": Case(["baseline", "data.train={tiny}/train.csv", "data.test={tmp}/h.csv",
                                          "output_dir={tmp}/o"], "h.csv: no data rows", HEADER_ONLY, ["{tmp}/o"]),
    "data.validation with labels training never saw": Case(["baseline", "data.train={tiny}/train.csv",
                                                            "data.validation={tmp}/v.csv", "output_dir={tmp}/o"],
                                                           "v.csv:2 [label]: label 'meh' never appears",
                                                           {"v.csv": _csv([(t, "meh") for t, _ in ROWS])}, ["{tmp}/o"]),
    "overwrite=maybe": Case(["baseline", "data.train={tiny}/train.csv", "output_dir={tmp}/o", "overwrite=maybe"],
                            "config key 'overwrite': expected bool, got 'maybe'", {}, ["{tmp}/o"]),
    "a YAML python tag": Case(["baseline", "{tmp}/c.yaml", "data.train={tiny}/train.csv", "output_dir={tmp}/o"],
                              "c.yaml:1:8: not valid YAML: could not determine a constructor",
                              {"c.yaml": b"train: !!python/object/apply:os.system ['touch pwned']\n"},
                              ["{tmp}/o", "pwned"]),
    "a bare word among the overrides": Case(["finetune", "data.train={tiny}/train.csv", "output_dir={tmp}/o", "lr"],
                                            "expected key=value, got 'lr'", {}, ["{tmp}/o"]),
    "finetune --epochs (a flag it does not have)": Case(["finetune", "data.train={tiny}/train.csv",
                                                         "output_dir={tmp}/o", "--epochs", "3"],
                                                        "unrecognized arguments: --epochs 3", {}, ["{tmp}/o"]),
    "a misspelt command": Case(["fintune", "x=1"], "invalid choice: 'fintune'"),
    "output_dir onto data.train": Case(["baseline", "data.train={tmp}/d.csv", "output_dir={tmp}/d.csv",
                                        "overwrite=true"], "is also an input of this command", {"d.csv": _csv(ROWS)}),
    "a jsonl object giving the label twice": Case(["baseline", "data.train={tmp}/d.jsonl", "output_dir={tmp}/o"],
                                                  "d.jsonl:1: key 'label' is given twice in one object",
                                                  {"d.jsonl": "".join('{"text": "%s", "label": "%s", "label": "x"}\n'
                                                                      % row for row in ROWS).encode()}, ["{tmp}/o"]),
    "a json array whose object gives a key twice": Case(["baseline", "data.train={tmp}/d.json", "output_dir={tmp}/o"],
                                                        "d.json: key 'text' is given twice in one object",
                                                        {"d.json": b'[{"text": "a", "text": "b", "label": "x"}]'},
                                                        ["{tmp}/o"]),
    "a csv row with extra fields": Case(["baseline", "data.train={tmp}/x.csv", "output_dir={tmp}/o"],
                                        "x.csv:42: expected 2 fields, got 4", {"x.csv": _csv(ROWS) + b"a,b,c,d\n"},
                                        ["{tmp}/o"]),
    "a label column with a different label on every row": Case(["baseline", "data.train={tmp}/u.csv",
                                                                "output_dir={tmp}/o"], "too few to hold out",
                                                               {"u.csv": _csv([(t, f"l{i}") for i, (t, _)
                                                                               in enumerate(ROWS)])}, ["{tmp}/o"]),
    # distill, prune, merge, generate, chat
    "distill from a teacher that does not exist": Case(["distill", "--teacher", "{tmp}/nope",
                                                        "data.train={tiny}/train.csv", "--out", "{tmp}/s"],
                                                       "model folder not found: {tmp}/nope", {}, ["{tmp}/s"]),
    "distill --student-layers 0": Case(["distill", "--teacher", "{model}", "data.train={tiny}/train.csv", "--out",
                                        "{tmp}/s", "--student-layers", "0"],
                                       "argument --student-layers: must be at least 1", {}, ["{tmp}/s"]),
    "distill more student layers than the teacher has": Case(["distill", "--teacher", "{model}",
                                                              "data.train={tiny}/train.csv", "--out", "{tmp}/s",
                                                              "--student-layers", "99"],
                                                             "distill.student_layers must be between 1 and 1", {},
                                                             ["{tmp}/s"]),
    "prune --heads 1.5": Case(["prune", "{model}", "--out", "{tmp}/p", "--heads", "1.5"],
                              "argument --heads: must be at most 1", {}, ["{tmp}/p"]),
    "prune every head": Case(["prune", "{model}", "--out", "{tmp}/p", "--heads", "1"],
                             "--heads must be a share in [0, 1)", {}, ["{tmp}/p"]),
    "prune with an unknown override": Case(["prune", "{model}", "--out", "{tmp}/p", "train.nope=1"],
                                           "unknown config key 'train.nope'", {}, ["{tmp}/p"]),
    "merge a model without LoRA": Case(["merge", "{model}", "--out", "{tmp}/m"], "holds no LoRA adapter", {},
                                       ["{tmp}/m"]),
    "generate with a classifier": Case(["generate", "{model}", "--input", "{tiny}/test.csv", "--output",
                                        "{tmp}/g.jsonl"], "is a classification model", {}, ["{tmp}/g.jsonl"]),
    "chat with a classifier": Case(["chat", "{model}"], "is a classification model: it cannot chat"),
    # kb, audit, canary, compare
    "kb build of an empty file": Case(["kb", "build", "{tmp}/e.jsonl", "--out", "{tmp}/kb", "--encoder", "{model}"],
                                      "e.jsonl: no data rows", {"e.jsonl": b""}, ["{tmp}/kb"]),
    "kb delete": Case(["kb", "delete", "{tmp}/x"], "argument action: invalid choice: 'delete'"),
    "kb eval without --data": Case(["kb", "eval", "{tmp}/x"], "kb eval needs INDEX and --data FILE",
                                   {"x/.keep": b""}),
    "audit with the training file as holdout": Case(["audit", "{model}", "--data", "{tiny}/train.csv", "--holdout",
                                                     "{tiny}/train.csv", "--out", "{tmp}/a"],
                                                    "is the training file --data itself", {}, ["{tmp}/a"]),
    "audit with a holdout that does not exist": Case(["audit", "{model}", "--data", "{tiny}/train.csv", "--holdout",
                                                      "{tmp}/nope.csv", "--out", "{tmp}/a"],
                                                     "file not found: {tmp}/nope.csv", {}, ["{tmp}/a"]),
    "canary --template without {secret}": Case(["canary", "{tmp}/q.jsonl", "--out", "{tmp}/c.jsonl", "--canaries",
                                                 "{tmp}/k.json", "--template", "no placeholder"],
                                                "has no {{secret}} placeholder",
                                                {"q.jsonl": b'{"question": "a", "answer": "b"}\n' * 20},
                                                ["{tmp}/c.jsonl", "{tmp}/k.json"]),
    "canary --canaries onto --out": Case(["canary", "{tmp}/q.jsonl", "--out", "{tmp}/c.jsonl", "--canaries",
                                          "{tmp}/c.jsonl"], "is the same path as --out",
                                         {"q.jsonl": b'{"question": "a", "answer": "b"}\n' * 20}, ["{tmp}/c.jsonl"]),
    "canary in a classification file": Case(["canary", "{tiny}/train.csv", "--out", "{tmp}/c.csv", "--canaries",
                                             "{tmp}/k.json"], "cannot tell the conversation format", {},
                                            ["{tmp}/c.csv", "{tmp}/k.json"]),
    "compare with a model that does not exist": Case(["compare", "{model}", "{tmp}/nope", "--data", "{tiny}/test.csv",
                                                      "--out", "{tmp}/c"], "model folder not found: {tmp}/nope", {},
                                                     ["{tmp}/c"]),
    "compare on a file without labels": Case(["compare", "{model}", "--data", "{tmp}/t.csv", "--out", "{tmp}/c"],
                                             "no row has column 'label'", {"t.csv": b"text\na\n"}, ["{tmp}/c"]),
    # evaluate (more)
    "evaluate a csv named .parquet": Case(["evaluate", "{model}", "--data", "{tmp}/p.parquet", "--out", "{tmp}/o"],
                                          "p.parquet: cannot read Parquet file", {"p.parquet": b"text,label\na,b\n"},
                                          ["{tmp}/o"]),
    "evaluate on labels the model never saw": Case(["evaluate", "{model}", "--data", "{tmp}/u.csv", "--out", "{tmp}/o"],
                                                   "label 'meh' never appears in the training data",
                                                   {"u.csv": _csv([(t, "meh") for t, _ in ROWS])}, ["{tmp}/o"]),
    # encrypt / decrypt / redact (more)
    "encrypt --out onto an existing file": Case(["encrypt", "{tmp}/a.csv", "--key-file", "{tmp}/k", "--out",
                                                 "{tmp}/b.enc"], "b.enc already exists",
                                                {"a.csv": b"x", "b.enc": b"keep"}, ["{tmp}/k"]),
    "decrypt an empty file": Case(["decrypt", "{tmp}/e.csv.enc", "--key-file", "{tmp}/k"], "e.csv.enc: not a file "
                                  "encrypted by `lmforge encrypt`", {"e.csv.enc": b"", "k": b"A" * 43 + b"="},
                                  ["{tmp}/e.csv"]),
    "encrypt with a folder as the key file": Case(["encrypt", "{tmp}/a.csv", "--key-file", "{tmp}/kd"],
                                                  "{tmp}/kd: not a key file", {"a.csv": b"x", "kd/x": b""},
                                                  ["{tmp}/a.csv.enc"]),
    "redact an empty file": Case(["redact", "{tmp}/e.csv", "--out", "{tmp}/r.csv"], "e.csv: file is empty",
                                 {"e.csv": b""}, ["{tmp}/r.csv"]),
    "redact --encoding klingon": Case(["redact", "{tiny}/test.csv", "--out", "{tmp}/r.csv", "--encoding", "klingon"],
                                      "unknown encoding 'klingon'", {}, ["{tmp}/r.csv"]),
    # ui, serve
    "ui --runs that is a file": Case(["ui", "--runs", "{tmp}/f"], "--runs {tmp}/f is an existing file, not a folder",
                                     {"f": b"x"}),
    "serve a model that does not exist": Case(["serve", "{tmp}/nope"], "model folder not found: {tmp}/nope"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_careless_commands_get_one_clear_error(name, tmp_path, capsys, tiny, tiny_classifier):
    case = CASES[name]

    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, model=tiny_classifier, tiny=tiny)

    for relative, content in case.files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(tmp_path / relative)
        else:
            (tmp_path / relative).write_bytes(content)
    _refused(capsys, [fill(a) for a in case.argv], fill(case.message), *(Path(fill(u)) for u in case.unwritten))


def test_predict_reads_huge_and_odd_texts(tmp_path, capsys, tiny_classifier):
    texts = ["长" * 100_000, "好 😀\u200b שלום مرحبا \u202e", "\u200b"]
    (tmp_path / "in.jsonl").write_bytes(_jsonl([{"text": t} for t in texts]))
    assert main(["predict", str(tiny_classifier), "--input", str(tmp_path / "in.jsonl"), "--output",
                 str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts and all(r["label"] in ("pos", "neg") for r in rows)


# ---------------------------------------------------------------------------- interrupt, then resume

def test_sigint_during_training_then_resume(tmp_path, capsys, tiny, monkeypatch):
    """A real SIGINT in the middle of training: exit 130 with one line, a checkpoint to continue from,
    and `--resume` finishing the run."""
    from lmforge.tasks.classification import Classification

    real, calls = Classification.loss, {"n": 0}

    def loss(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 12:
            signal.raise_signal(signal.SIGINT)
        return real(self, model, batch)

    monkeypatch.setattr(Classification, "loss", loss)
    # What a terminal's Ctrl-C meets in a foreground `lmforge` process: Python's own handler. A pytest
    # started as a background job of a non-interactive shell inherits SIGINT ignored (Python keeps
    # SIG_IGN), and the run then finished instead of stopping; set here so the test does not depend on it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        argv = ["finetune", f"data.train={tiny / 'train.csv'}", f"output_dir={tmp_path / 'run'}", "model.preset=tiny",
                f"model.tokenizer={tiny / 'tok'}", "train.epochs=2", "train.batch_size=32", "train.lr=2e-3",
                "train.save_every=5", "train.precision=fp32"]
        assert main(argv) == 130
        err = capsys.readouterr().err
        assert "interrupted" in err and "Traceback" not in err
        assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
        assert main([*argv, "--resume"]) == 0
        assert (tmp_path / "run" / "best" / "config.json").is_file()
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------- encryption at rest

def test_decrypting_a_tampered_file(tmp_path, capsys, tiny):
    data = tmp_path / "train.csv"
    shutil.copy(tiny / "train.csv", data)
    assert main(["encrypt", str(data), "--key-file", str(tmp_path / "key")]) == 0
    enc = tmp_path / "train.csv.enc"
    blob = bytearray(enc.read_bytes())
    blob[len(blob) // 2] ^= 1
    enc.write_bytes(bytes(blob))
    data.unlink()
    _refused(capsys, ["decrypt", str(enc), "--key-file", str(tmp_path / "key")], "train.csv.enc", data)


def test_decrypting_with_another_key(tmp_path, capsys, tiny):
    data = tmp_path / "train.csv"
    shutil.copy(tiny / "train.csv", data)
    assert main(["encrypt", str(data), "--key-file", str(tmp_path / "key")]) == 0
    assert main(["encrypt", str(data), "--key-file", str(tmp_path / "other"), "--out", str(tmp_path / "x.enc")]) == 0
    data.unlink()
    _refused(capsys, ["decrypt", str(tmp_path / "train.csv.enc"), "--key-file", str(tmp_path / "other")],
             "train.csv.enc", data)


# ---------------------------------------------------------------------------- serve request bodies

SERVE_BODIES: dict[str, tuple[str, bytes, int]] = {
    "a number instead of texts": ("/v1/classify", b'{"input": 5}', 422),
    "a list of numbers": ("/v1/classify", b'{"input": [1, 2]}', 422),
    "not JSON": ("/v1/classify", b"{input: [", 422),
    "an empty list": ("/v1/classify", b'{"input": []}', 422),
    "a 100k-character text": ("/v1/classify", json.dumps({"input": ["长" * 100_000]}).encode(), 200),
    "emoji, zero-width and right-to-left": ("/v1/classify", json.dumps({"input": ["好 😀\u200b שלום \u202e"]}).encode(),
                                            200),
    "a JSON list body": ("/v1/classify", b'["a"]', 422),
    "an unpaired surrogate": ("/v1/classify", b'{"input": ["bad \\ud800"]}', 422),
    "a NUL byte": ("/v1/classify", b'{"input": ["bad \\u0000"]}', 422),
    "input null": ("/v1/classify", b'{"input": null}', 422),
    "one bare text": ("/v1/classify", b'{"input": "\xe5\xa5\xbd"}', 200),
    "a misspelt field": ("/v1/explain", b'{"input": ["a"], "mehtod": "ig"}', 422),
    "an empty body": ("/v1/classify", b"", 422),
    "an empty text": ("/v1/classify", b'{"input": [""]}', 422),
    "10,000 texts": ("/v1/classify", json.dumps({"input": ["a"] * 10_000}).encode(), 422),
    "nested lists": ("/v1/classify", b'{"input": [["a"]]}', 422),
    "an unknown explain method": ("/v1/explain", b'{"input": ["a"], "method": "lime"}', 422),
    "an empty text to explain": ("/v1/explain", b'{"input": [""]}', 422),
    "a body in UTF-16": ("/v1/classify", '{"input": ["好"]}'.encode("utf-16"), 200),
    "JSON nested 100,000 deep": ("/v1/classify", b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    "ner on a classifier": ("/v1/ner", b'{"input": ["a"]}', 400),
    "chat without a model name": ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}]}', 422),
}


@pytest.fixture(scope="module")
def served(tiny_classifier):
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    with TestClient(create_app(tiny_classifier)) as client:
        yield client


@pytest.mark.parametrize("name", list(SERVE_BODIES))
def test_serve_answers_careless_bodies_with_a_clear_status(name, served):
    route, body, status = SERVE_BODIES[name]
    response = served.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if status != 200:
        assert "Traceback" not in response.text and response.json()["error"]["message"]


# ---------------------------------------------------------------------------- helpers

def _refused(capsys, argv: list[str], message: str, *unwritten: Path) -> None:
    """The command exits 2 with one `error:` line holding `message`, no traceback, and writes none of `unwritten`
    (a flag out of range is refused by argparse, which exits 2 itself)."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    for path in unwritten:
        assert not path.exists(), f"{path} was written"
