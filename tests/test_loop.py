"""The one loop: seeded and reproducible, accumulation-exact, resumable to identical weights."""

import json

import torch
from conftest import without_dropout

from lmforge.run import fit_prepared, prepare
from lmforge.tasks import build_task


def _train(cfg, no_dropout: bool = False):
    """Prepare and fit exactly as `finetune` does; return (result, final weights)."""
    prepared = prepare(cfg)
    if no_dropout:  # micro-batches of different shapes draw different dropout masks
        without_dropout(prepared.model)
    result = fit_prepared(prepared)
    return result, {k: v.detach().clone() for k, v in prepared.model.state_dict().items()}


def _losses(result):
    return [r["train_loss"] for r in result.history if "train_loss" in r]


def test_seeded_run_learns_and_repeats(tiny_cfg, tmp_path):
    first, w1 = _train(tiny_cfg("train.epochs=6", "train.log_every=5", f"output_dir={tmp_path / 'a'}"))
    again, w2 = _train(tiny_cfg("train.epochs=6", "train.log_every=5", f"output_dir={tmp_path / 'b'}"))
    assert _losses(first) == _losses(again)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    losses = _losses(first)
    assert losses[-1] < 0.5 * losses[0], losses
    evals = [r for r in first.history if "eval_accuracy" in r]
    assert len(evals) == 6 and evals[-1]["eval_accuracy"] > 0.8
    assert (first.best_dir / "model.safetensors").is_file() and (first.best_dir / "config.json").is_file()


def test_accumulation_equals_full_batch(tiny_cfg, tmp_path):
    common = ("train.max_steps=4", "train.batch_size=16")
    _, full = _train(tiny_cfg(*common, f"output_dir={tmp_path / 'full'}"), no_dropout=True)
    _, accum = _train(tiny_cfg(*common, "train.grad_accum=4", f"output_dir={tmp_path / 'acc'}"), no_dropout=True)
    for key in full:
        torch.testing.assert_close(accum[key], full[key], rtol=1e-4, atol=1e-5)


def test_resume_after_interruption_gives_identical_weights(tiny_cfg, tmp_path, interrupted):
    args = ("train.epochs=3", "train.save_every=4", "train.eval_every=10")
    _, straight = _train(tiny_cfg(*args, f"output_dir={tmp_path / 'straight'}"))

    out = tmp_path / "killed"
    task_cls = type(build_task("classification", tiny_cfg()))
    # dies during step 14, after the checkpoint at step 12
    interrupted(task_cls, 13, lambda: _train(tiny_cfg(*args, f"output_dir={out}")))
    assert (out / "checkpoint" / "state.json").is_file()

    resumed, weights = _train(tiny_cfg(*args, f"output_dir={out}", "train.resume=true"))
    assert resumed.steps == 42  # 216 training rows / 16 = 14 steps per epoch
    for key in straight:
        assert torch.equal(weights[key], straight[key]), key
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps[0] == 1 and steps[-1] == 42  # the resumed run continued the interrupted run's log


def test_a_new_run_into_the_same_folder_starts_a_fresh_log(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.max_steps=3", "train.log_every=1", "overwrite=true", f"output_dir={tmp_path / 'a'}")
    _train(cfg)
    _train(cfg)
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1 and steps == sorted(steps)


def test_budgets_and_early_stopping(tiny_cfg, tmp_path):
    capped, _ = _train(tiny_cfg("train.max_steps=3", f"output_dir={tmp_path / 'a'}"))
    assert capped.steps == 3 and capped.stopped == "max_steps"
    # a run that learned and then stops gaining is stopped by patience before its planned 20 epochs
    learned, _ = _train(tiny_cfg("train.patience=1", "train.epochs=20", f"output_dir={tmp_path / 'b'}"))
    assert learned.stopped == "early_stopping" and learned.steps < 20 * 14


def test_a_collapsed_classifier_is_not_early_stopped(tiny_cfg, tmp_path):
    """At a rate of 1e-12 the random-init classifier never leaves the one class it starts on: its
    evaluations are marked collapsed and patience does not count them — a run that has not started
    learning gets its planned steps (a slow DP-SGD start used to be stopped at chance here)."""
    stuck, _ = _train(tiny_cfg("train.lr=1e-12", "train.patience=1", "train.epochs=5", f"output_dir={tmp_path / 'b'}"))
    assert stuck.stopped == "completed" and stuck.steps == 5 * 14
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["eval_collapsed"] for r in log if "eval_collapsed" in r] == [1.0] * 5
