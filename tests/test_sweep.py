"""`lmforge sweep`: search-space parsing, trials as run folders, pruning, resuming, best.yaml."""

import json

import optuna
import pytest
import yaml

from lmforge import config
from lmforge.errors import LmforgeError
from lmforge.sweep import Dimension, parse_space


def test_space_ranges_choices_and_files(tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text("train.batch_size: [8, 16]\ntrain.warmup_ratio: 0.0..0.2\n")
    dims = parse_space(["train.lr=1e-5..1e-3:log", "train.epochs=2..10", "train.schedule=linear,cosine",
                        str(space_file)])
    assert dims == [Dimension("train.lr", 1e-5, 1e-3, log=True), Dimension("train.epochs", 2, 10, integer=True),
                    Dimension("train.schedule", choices=("linear", "cosine")),
                    Dimension("train.batch_size", choices=(8, 16)), Dimension("train.warmup_ratio", 0.0, 0.2)]


@pytest.mark.parametrize("item, message", [
    ("train.lrr=1e-5..1e-3", "'train.lrr' is not a config key"),
    ("train.lr=1e-3..1e-5", "is empty"),
    ("train.lr=0..1e-3:log", "positive lower end"),
    ("train.lr", "expected key=lo..hi"),
    ("train.lr=fast", "neither a range"),
])
def test_bad_spaces_are_refused_by_name(item, message):
    with pytest.raises(LmforgeError, match=message):
        parse_space([item])


def test_three_trials_one_pruned_then_resumed(tiny_cfg, tmp_path):
    from lmforge.commands.sweep import run

    out = tmp_path / "sweep"
    out.mkdir()
    storage = f"sqlite:///{out / 'study.db'}"
    # Two good rates first, then one that cannot learn: the median pruner stops it at its first evaluation.
    study = optuna.create_study(storage=storage, study_name="lmforge-sweep", direction="maximize")
    for lr in (2e-3, 3e-3, 1e-12):
        study.enqueue_trial({"train.lr": lr})
    cfg = tiny_cfg("train.epochs=3", "train.patience=0")
    result = run(cfg, ["train.lr=1e-12..1e-2:log"], str(out), trials=3)

    states = {row["trial"]: row["state"] for row in result["leaderboard"]}
    assert states == {0: "complete", 1: "complete", 2: "pruned"}
    assert result["best_trial"] in (0, 1) and result["best_value"] > 0.8
    steps_pruned = json.loads((out / "leaderboard.json").read_text())[-1]["steps"]
    assert steps_pruned is None or steps_pruned < result["leaderboard"][0]["steps"]
    for n in range(3):  # every trial is an ordinary run folder
        assert (out / f"trial-{n:03d}" / "config.yaml").is_file() and not (out / f"trial-{n:03d}" / "checkpoint").exists()
    best = config.load(out / "best.yaml")
    assert best.train.lr == result["leaderboard"][0]["params"]["train.lr"]
    assert "trial" in (out / "leaderboard.html").read_text(encoding="utf-8")

    again = run(cfg, ["train.lr=1e-12..1e-2:log"], str(out), trials=4)  # the same folder continues the study
    assert len(again["leaderboard"]) == 4 and (out / "trial-003").is_dir()


def test_a_foreign_folder_is_refused_and_a_bad_base_fails_before_any_trial(tiny_cfg, tmp_path):
    from lmforge.commands.sweep import run

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(LmforgeError, match="--out"):
        run(tiny_cfg(), ["train.lr=1e-4..1e-3"], str(taken), trials=1)
    with pytest.raises(LmforgeError, match="method=lora"):
        run(tiny_cfg("method=lora"), ["train.lr=1e-4..1e-3"], str(tmp_path / "s"), trials=1)
    assert not (tmp_path / "s" / "trial-000").exists()
    assert yaml.safe_load((taken / "notes.txt").read_text()) == "mine"
