"""Shared fixtures: a tiny tokenizer and a small synthetic bilingual sentiment set, built offline."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from lmforge import config

POSITIVE = ["很好", "不错", "喜欢", "满意", "推荐", "great", "good"]
NEGATIVE = ["很差", "失望", "糟糕", "退货", "不好", "bad", "awful"]
FILLER = ["这个", "酒店", "房间", "服务", "东西", "质量", "价格", "the", "room", "was"]


def review(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with tok/ (a ~60-entry WordPiece vocab), train.csv (240 rows) and test.csv (60 rows)."""
    from transformers import BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny")
    rng = random.Random(0)
    def rows(n):
        return [(review(rng, label), label) for label in (rng.choice(["pos", "neg"]) for _ in range(n))]
    write_csv(root / "train.csv", rows(240))
    write_csv(root / "test.csv", rows(60))
    chars = sorted({c for w in POSITIVE + NEGATIVE + FILLER if not w.isascii() for c in w})
    words = [w for w in POSITIVE + NEGATIVE + FILLER if w.isascii()]
    (root / "tok").mkdir()
    (root / "tok" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *words]) + "\n")
    BertTokenizerFast.from_pretrained(root / "tok").save_pretrained(root / "tok")
    return root


@pytest.fixture
def tiny_cfg(tiny: Path, tmp_path: Path):
    """A config that trains the tiny preset on the tiny data into a fresh output_dir."""

    def make(*overrides: str) -> config.Config:
        base = [
            f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}", "model.preset=tiny",
            f"model.tokenizer={tiny / 'tok'}", f"output_dir={tmp_path / 'run'}", "train.epochs=2",
            "train.batch_size=16", "train.lr=2e-3", "train.seed=0", "train.precision=fp32",
        ]
        return config.load(None, base + list(overrides))

    return make


def without_dropout(model) -> None:
    """Zero every dropout rate: micro-batches of different shapes, or several processes, would
    otherwise draw different masks, and runs that must match would not."""
    from lmforge.models.load import set_dropout

    set_dropout(model, 0.0)


@pytest.fixture
def interrupted(monkeypatch):
    """`interrupted(task_cls, calls, train)`: run `train()` with the task's loss raising
    KeyboardInterrupt on call number `calls + 1`, as if the process were killed mid-run.
    (Tasks with per-example `losses`, which DP-SGD calls and `loss` sums, are stopped there.)"""

    def run(task_cls: type, calls: int, train) -> None:
        name = "losses" if hasattr(task_cls, "losses") else "loss"
        real, seen = getattr(task_cls, name), {"n": 0}

        def dying(self, model, batch):
            seen["n"] += 1
            if seen["n"] > calls:
                raise KeyboardInterrupt
            return real(self, model, batch)

        monkeypatch.setattr(task_cls, name, dying)
        with pytest.raises(KeyboardInterrupt):
            train()
        monkeypatch.setattr(task_cls, name, real)

    return run


@pytest.fixture(scope="session")
def tiny_classifier(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny classifier folder (fp32), shared by the tests that only read it."""
    from lmforge.commands import finetune

    out = tmp_path_factory.mktemp("tiny_classifier")
    finetune.run(config.load(None, [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}",
                                    "model.preset=tiny", f"model.tokenizer={tiny / 'tok'}", f"output_dir={out}",
                                    "train.epochs=5", "train.batch_size=16", "train.lr=2e-3", "train.seed=0",
                                    "train.precision=fp32"]))
    return out / "best"
