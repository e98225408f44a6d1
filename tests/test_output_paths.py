"""Every command that writes refuses to lose data: an existing non-empty output needs --overwrite,
an output is never one of its inputs (nor holds one, nor lies inside one), and every output path is
checked before the first byte is written."""

from pathlib import Path

import pytest

from lmforge.cli import main


def _victim(folder: Path) -> Path:
    """A folder holding a user's unrelated file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keep.txt").write_text("precious")
    return folder


@pytest.fixture
def corpus_src(tmp_path) -> Path:
    raw = tmp_path / "proj" / "raw"
    raw.mkdir(parents=True)
    text = "\n".join(f"第{i}篇文章的内容足够长，可以留下来作为语料。" for i in range(30))
    (raw / "a.txt").write_text(text, encoding="utf-8")
    return raw


def _refused(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err  # one message, and it is the last word
    err = errors[0]
    for needle in needles:
        assert needle in err, err
    return err


# ---- folder outputs: an unrelated user folder is never replaced without --overwrite --------------
def _folder_commands(tmp_path: Path, src: Path, model: Path, data: Path) -> dict[str, list[str]]:
    return {
        "corpus": ["corpus", "build", str(src)],
        "tokenizer": ["tokenizer", "train", str(src)],
        "evaluate": ["evaluate", str(model), "--data", str(data)],
        "merge": ["merge", str(model)],
        "quantize": ["quantize", str(model), "--method", "bf16"],
        "trim-vocab": ["trim-vocab", str(model), "--data", str(data)],
        "export-onnx": ["export-onnx", str(model)],
        "prune": ["prune", str(model)],
        "compare": ["compare", str(model), "--data", str(data)],
        "kb": ["kb", "build", str(data), "--encoder", str(model)],
        "encrypt-folder": ["encrypt", str(src), "--key-file", str(tmp_path / "key")],
    }


@pytest.mark.parametrize("name", ["corpus", "tokenizer", "evaluate", "merge", "quantize", "trim-vocab", "export-onnx",
                                  "prune", "compare", "kb", "encrypt-folder"])
def test_an_existing_folder_is_not_replaced(capsys, tmp_path, corpus_src, tiny_classifier, tiny, name):
    victim = _victim(tmp_path / "mine")
    argv = _folder_commands(tmp_path, corpus_src, tiny_classifier, tiny / "test.csv")[name] + ["--out", str(victim)]
    _refused(capsys, argv, f"--out {victim} already holds files", "--overwrite")
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]


def test_predict_does_not_overwrite_an_existing_file(capsys, tmp_path, tiny_classifier, tiny):
    target = tmp_path / "old.jsonl"
    target.write_text("precious")
    _refused(capsys, ["predict", str(tiny_classifier), "--input", str(tiny / "test.csv"), "--output", str(target)],
             f"--output {target} already exists")
    assert target.read_text() == "precious"


def test_generate_does_not_overwrite_an_existing_file(capsys, tmp_path, tiny_classifier, tiny):
    target = tmp_path / "answers.jsonl"
    target.write_text("precious")
    _refused(capsys, ["generate", str(tiny_classifier), "--input", str(tiny / "test.csv"), "--output", str(target)],
             "already exists")
    assert target.read_text() == "precious"


def test_overwrite_replaces_an_output_folder(capsys, tmp_path, corpus_src):
    victim = _victim(tmp_path / "corpus")
    assert main(["corpus", "build", str(corpus_src), "--out", str(victim), "--overwrite"]) == 0
    assert (victim / "docs.jsonl").is_file() and not (victim / "keep.txt").exists()


# ---- inputs are never destroyed, even with --overwrite ------------------------------------------
def test_corpus_build_cannot_replace_the_folder_holding_its_input(capsys, corpus_src):
    project = corpus_src.parent
    _refused(capsys, ["corpus", "build", str(corpus_src), "--out", str(project), "--overwrite"],
             f"holds the input {corpus_src}")
    assert (corpus_src / "a.txt").is_file()


def test_tokenizer_output_inside_its_input_folder_is_refused(capsys, corpus_src):
    _refused(capsys, ["tokenizer", "train", str(corpus_src), "--out", str(corpus_src / "tok")],
             "lies inside the input folder")
    assert [p.name for p in corpus_src.iterdir()] == ["a.txt"]


def test_encrypt_onto_its_own_plaintext_is_refused(capsys, tmp_path):
    plain = tmp_path / "secret.csv"
    plain.write_text("text,label\n你好,pos\n", encoding="utf-8")
    _refused(capsys, ["encrypt", str(plain), "--key-file", str(tmp_path / "k"), "--out", str(plain), "--overwrite"],
             "is also an input")
    assert plain.read_text(encoding="utf-8") == "text,label\n你好,pos\n"
    assert not (tmp_path / "k").exists()  # refused before the key file was created


def test_an_existing_file_given_as_a_folder_output_is_left_alone(capsys, tmp_path, corpus_src):
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    _refused(capsys, ["corpus", "build", str(corpus_src), "--out", str(target), "--overwrite"], "is an existing file")
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no hidden .notes.txt.old


# ---- every output is checked before the first is written ----------------------------------------
def test_redact_with_a_folder_as_report_writes_nothing(capsys, tmp_path, tiny):
    out = tmp_path / "redacted.csv"
    (tmp_path / "reports").mkdir()
    _refused(capsys, ["redact", str(tiny / "test.csv"), "--out", str(out), "--report", str(tmp_path / "reports")],
             "is a folder, not a file")
    assert not out.exists()


def test_two_outputs_on_one_path_are_refused(capsys, tmp_path, tiny):
    same = tmp_path / "same.csv"
    _refused(capsys, ["redact", str(tiny / "test.csv"), "--out", str(same), "--report", str(same)],
             "same path as --out")
    assert not same.exists()


def test_an_output_under_a_file_is_refused_up_front(capsys, tmp_path, tiny_classifier, tiny):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    _refused(capsys, ["evaluate", str(tiny_classifier), "--data", str(tiny / "test.csv"), "--out",
                      str(blocker / "eval")], "which is a file, not a folder")


def test_finetune_output_dir_holding_its_training_data_is_refused(capsys, tiny, tmp_path):
    data = tmp_path / "proj" / "train.csv"
    data.parent.mkdir()
    data.write_bytes((tiny / "train.csv").read_bytes())
    _refused(capsys, ["finetune", f"data.train={data}", "model.preset=tiny", f"model.tokenizer={tiny / 'tok'}",
                      f"output_dir={data.parent}", "overwrite=true"], "holds the input")
    assert [p.name for p in data.parent.iterdir()] == ["train.csv"]


def test_finetune_into_a_used_folder_names_resume_and_overwrite(capsys, tiny, tmp_path):
    victim = _victim(tmp_path / "run")
    _refused(capsys, ["finetune", f"data.train={tiny / 'train.csv'}", "model.preset=tiny",
                      f"model.tokenizer={tiny / 'tok'}", f"output_dir={victim}"], "--resume", "overwrite=true")
