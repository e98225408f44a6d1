"""Distillation: soft labels lower the KD loss, the student follows the teacher, folders load anywhere."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge import config
from lmforge.cli import main
from lmforge.commands import distill, finetune
from lmforge.models.student import every_kth, keep_layers
from lmforge.tasks import build_task


@pytest.fixture(scope="module")
def teacher(tiny, tmp_path_factory) -> Path:
    """A tiny classifier trained on the tiny data: runs/teacher/best."""
    out = tmp_path_factory.mktemp("teacher")
    cfg = config.load(None, [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}", "model.preset=tiny",
                             f"model.tokenizer={tiny / 'tok'}", f"output_dir={out}", "train.epochs=6",
                             "train.batch_size=16", "train.lr=2e-3", "train.seed=0", "train.precision=fp32"])
    assert finetune.run(cfg)["accuracy"] > 0.9
    return out / "best"


def _student_cfg(tiny, out, *overrides):
    return config.load(None, [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}",
                              f"output_dir={out}", "train.batch_size=16", "train.lr=2e-3", "train.seed=0",
                              "train.precision=fp32", *overrides])


def test_every_kth_and_keep_layers(teacher):
    from transformers import AutoModelForSequenceClassification

    assert every_kth(12, 6) == [0, 2, 4, 6, 8, 10] and every_kth(4, 2) == [0, 2] and every_kth(5, 2) == [0, 2]
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    top = model.bert.encoder.layer[1].attention.self.query.weight.detach().clone()
    keep_layers(model, [1])
    assert model.config.num_hidden_layers == 1 and len(model.bert.encoder.layer) == 1
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, top)


def test_distillation_lowers_kd_loss_and_student_follows_teacher(tiny, teacher, tmp_path):
    """A randomly initialised student trained on soft labels only (alpha=1)."""
    out = tmp_path / "student"
    cfg = _student_cfg(tiny, out, f"distill.teacher={teacher}", "model.preset=tiny", "distill.alpha=1",
                       "train.epochs=4")
    metrics = distill.run(cfg)
    history = [json.loads(line) for line in (out / "run" / "train_log.jsonl").read_text().splitlines()]
    kd = [r["eval_kd"] for r in history if "eval_kd" in r]
    assert len(kd) == 4 and kd[-1] < 0.5 * kd[0], kd
    # above chance (the two classes are balanced) and near the teacher
    assert metrics["teacher_agreement"] > 0.85 and metrics["accuracy"] > 0.8, metrics
    assert metrics["teacher"]["accuracy"] > 0.9 and metrics["parameters"] > 0


def test_layer_student_is_a_plain_folder(tiny, teacher, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from lmforge.inference import load

    out = tmp_path / "student"
    distill.run(_student_cfg(tiny, out, "train.epochs=2"), teacher=str(teacher), student_layers=1, out=str(out))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 1 and model.config.id2label == {0: "neg", 1: "pos"}
    loaded = load(out)
    assert loaded.task.name == "classification" and loaded.predict(["很好 服务"])[0]["label"] in ("neg", "pos")
    assert (out / "metrics.json").is_file() and (out / "report.html").is_file()
    assert not (out / "run" / "checkpoint").exists() and (out / "run" / "train_log.jsonl").is_file()


def test_unlabelled_texts_feed_only_the_soft_term(tiny, teacher, tmp_path):
    (tmp_path / "extra.csv").write_text("text\n很好 房间\n很差 价格\n", encoding="utf-8")
    cfg = _student_cfg(tiny, tmp_path / "s", f"distill.teacher={teacher}", "distill.student_layers=1",
                       f"distill.unlabelled={tmp_path / 'extra.csv'}", "distill.alpha=0")
    task = build_task("distill", cfg)
    data = task.load_data()
    model, tok = task.build_model(data)
    task.bind(model, tok)
    features = task.encode(task.unlabelled, tok)
    assert [f["hard"] for f in features] == [0.0, 0.0] and all(f["labels"] == -100 for f in features)
    probs = np.exp(np.stack([f["teacher"] for f in features]))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-4)  # log-probabilities of the teacher
    assert probs[0].argmax() == 1 and probs[1].argmax() == 0  # pos, neg
    # alpha = 0: only hard labels count, and these texts have none
    assert task.loss(model, task.collate(features)).item() == 0.0
    labelled = task.encode(data.validation, tok)[:4]
    assert task.loss(model, task.collate(labelled)).item() > 0


def test_distill_errors(tiny, teacher, tmp_path):
    from lmforge.errors import LmforgeError

    with pytest.raises(LmforgeError, match="distill.teacher is empty"):
        distill.run(_student_cfg(tiny, tmp_path / "a", "distill.student_layers=1"))
    with pytest.raises(LmforgeError, match="between 1 and 1"):
        distill.run(_student_cfg(tiny, tmp_path / "b"), teacher=str(teacher), student_layers=2, out=str(tmp_path / "b"))
    (tmp_path / "three.csv").write_text("text,label\n很好,pos\n很差,neg\n一般,mid\n", encoding="utf-8")
    with pytest.raises(LmforgeError, match="differ from the teacher"):
        distill.run(_student_cfg(tiny, tmp_path / "c", f"data.train={tmp_path / 'three.csv'}",
                                 f"data.validation={tmp_path / 'three.csv'}", f"data.test={tmp_path / 'three.csv'}"),
                    teacher=str(teacher), student_layers=1)


def test_cli_distill_then_predict(tiny, teacher, tmp_path):
    out = tmp_path / "student"
    code = main(["distill", "--teacher", str(teacher), "--student-layers", "1", f"data.train={tiny / 'train.csv'}",
                 "train.max_steps=3", "train.precision=fp32", "--out", str(out), "train.batch_size=16"])
    assert code == 0 and (out / "model.safetensors").is_file()
    saved = config.load(out / "lmforge.yaml")
    assert saved.distill.teacher == str(teacher) and saved.distill.student_layers == 1 and saved.train.max_steps == 3
    assert saved.model.path == str(teacher) and not saved.model.preset
    from lmforge.commands.evaluate import _history  # `evaluate` shows the student's curves, not the teacher's

    history = _history(out)
    assert history == [json.loads(line) for line in (out / "run" / "train_log.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 3
    assert main(["predict", str(out), "--input", str(tiny / "test.csv"), "--output", str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 60
