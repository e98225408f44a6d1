"""Careless and hostile input, one case per row: each gets one `error:` line naming the file, line,
field or key — no traceback, no silent acceptance — and nothing is written; or, where the input is
legitimate (a BOM, mixed newlines, emoji, a 100k-character text), it is handled right.

`lmforge baseline` runs the same config and data checks as every training command without a model,
and the model cases share one tiny classifier, so the whole file stays fast."""

from __future__ import annotations

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
    written under tmp first; `unwritten` (templates too) must not exist afterwards."""

    argv: list[str]
    message: str
    files: dict[str, bytes] = field(default_factory=dict)
    unwritten: list[str] = field(default_factory=list)


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
}


@pytest.mark.parametrize("name", list(CASES))
def test_careless_commands_get_one_clear_error(name, tmp_path, capsys, tiny, tiny_classifier):
    case = CASES[name]

    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, model=tiny_classifier, tiny=tiny)

    for relative, content in case.files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
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
    argv = ["finetune", f"data.train={tiny / 'train.csv'}", f"output_dir={tmp_path / 'run'}", "model.preset=tiny",
            f"model.tokenizer={tiny / 'tok'}", "train.epochs=2", "train.batch_size=32", "train.lr=2e-3",
            "train.save_every=5", "train.precision=fp32"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    assert main([*argv, "--resume"]) == 0
    assert (tmp_path / "run" / "best" / "config.json").is_file()


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
