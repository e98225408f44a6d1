"""DP-SGD: per-example clipping, honest accounting, Poisson batches, resume, loadable output."""

import json

import pytest
import torch
from conftest import without_dropout

from lmforge import config
from lmforge.errors import LmforgeError
from lmforge.privacy.dp import DPTraining, build_dp
from lmforge.run import fit_prepared, prepare
from lmforge.tasks import build_task
from lmforge.train.batching import poisson_epoch
from lmforge.train.freeze import freeze_embeddings

CLASSIFIER = build_task("classification", config.Config())  # a task with per-example losses
# 216 training rows after the validation hold-out; 16 per batch -> 14 steps per epoch
DP_RUN = ("train.max_steps=6", "train.eval_every=3", "privacy.dp.target_epsilon=8")


def _train(cfg):
    prepared = prepare(cfg)
    result = fit_prepared(prepared)
    return result, {k: v.detach().clone() for k, v in prepared.model.state_dict().items()}


def _last_epsilon(result) -> float:
    return [r for r in result.history if "dp_epsilon" in r][-1]["dp_epsilon"]


def test_poisson_epoch_is_seeded_and_samples_at_rate_q():
    plan = poisson_epoch(1000, 50, seed=3, epoch=1)
    assert plan == poisson_epoch(1000, 50, seed=3, epoch=1)
    assert plan != poisson_epoch(1000, 50, seed=3, epoch=2)
    assert len(plan) == 20
    sizes = [len(b) for b in plan]
    assert 30 < sum(sizes) / len(sizes) < 70 and len(set(sizes)) > 1  # mean q*N = 50, sizes vary
    assert all(b == sorted(set(b)) and all(0 <= i < 1000 for i in b) for b in plan)


def test_config_checks(tiny_cfg):
    assert build_dp(tiny_cfg(), CLASSIFIER, 216, 10, 1) is None  # off by default
    with pytest.raises(LmforgeError, match="data parallelism.*not FSDP"):
        build_dp(tiny_cfg("privacy.dp.noise_multiplier=1"), CLASSIFIER, 216, 10, 2, "FSDP")
    with pytest.raises(LmforgeError, match="not both"):
        build_dp(tiny_cfg("privacy.dp.noise_multiplier=1", "privacy.dp.target_epsilon=3"), CLASSIFIER, 216, 10, 1)
    with pytest.raises(LmforgeError, match=r"clip_quantile=1\.0 must be in \[0, 1\)"):
        build_dp(tiny_cfg("privacy.dp.noise_multiplier=1", "privacy.dp.clip_quantile=1"), CLASSIFIER, 216, 10, 1)
    with pytest.raises(LmforgeError, match="below 1/N"):
        build_dp(tiny_cfg("privacy.dp.noise_multiplier=1", "privacy.dp.delta=0.01"), CLASSIFIER, 216, 10, 1)
    run = build_dp(tiny_cfg("privacy.dp.noise_multiplier=1.5"), CLASSIFIER, 216, 10, 1)
    assert run.noise_multiplier == 1.5 and run.sample_rate == 16 / 216 and run.delta == 1 / 2160


def test_unsupported_module_is_named():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    run = DPTraining(1.0, 0.1, 1.0, 1e-5, 8)
    with pytest.raises(LmforgeError, match="BatchNorm"):
        run.wrap(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_each_example_is_clipped_to_max_grad_norm(tiny_cfg):
    """With no noise, one step moves the weights by lr/B * sum of per-example gradients, each
    scaled down to norm <= C; an example with a huge loss contributes no more than C. The batch
    is split into two micro-batches, as train.grad_accum does: the sum must not change."""
    prepared = prepare(tiny_cfg())
    task, model, train = prepared.task, prepared.model, prepared.train
    without_dropout(model)
    model.train()
    batch = task.collate([train[i] for i in range(4)])
    params = [p for p in model.parameters() if p.requires_grad]
    per_example = []  # example 0's loss is scaled up 1000x: a huge-loss example
    for i in range(4):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        scale = 1000.0 if i == 0 else 1.0
        grads = torch.autograd.grad(task.loss(model, one) * scale, params, allow_unused=True)
        per_example.append([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)])
    norms = [torch.sqrt(sum((g**2).sum() for g in ex)) for ex in per_example]
    clip = 0.05
    assert norms[0] > 100 * clip
    expected = [sum(min(1.0, clip / (n.item() + 1e-6)) * ex[k] for ex, n in zip(per_example, norms)) / 4
                for k in range(len(params))]

    run = DPTraining(0.0, 4 / 216, clip, 1e-5, batch_size=4)
    optimizer = run.wrap(model, torch.optim.SGD(params, lr=1.0))
    before = [p.detach().clone() for p in params]
    weights = torch.tensor([1000.0, 1.0, 1.0, 1.0])  # per-example loss scaling, as above
    sample_norms = []
    for part in (slice(0, 2), slice(2, 4)):
        run.backward(task.losses(model, {k: v[part] for k, v in batch.items()}) * weights[part])
        sample_norms.append(run.module.per_sample_gradient_norms)
    sample_norms = torch.cat(sample_norms)
    optimizer.step()
    for p, b, e in zip(params, before, expected):
        torch.testing.assert_close(b - p.detach(), e, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(sample_norms, torch.stack(norms), rtol=1e-3, atol=1e-6)
    moved = torch.sqrt(sum(((b - p.detach()) ** 2).sum() for b, p in zip(before, params)))
    assert moved <= 4 * clip / 4 + 1e-6  # at most lr * C / B per example
    assert len(run.accountant) == 1


def test_adaptive_bound_moves_to_the_quantile_of_the_norms_and_the_noise_is_shared():
    """privacy.dp.clip_quantile: examples with gradient norms 1..200 (a linear model, loss = x_i * w),
    a bound starting far below all of them grows step by step (each step clips every example) and
    settles near the median; started far above, it falls to the same place. The gradient noise is
    what Theorem 1 of Andrew et al. leaves of sigma after the count's noise, and the accountant
    records sigma itself, so epsilon is that of a fixed-bound run."""
    x = torch.arange(1.0, 201.0).unsqueeze(1)
    for start, first_move in ((1.0, "up"), (1000.0, "down")):
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1, bias=False)
        run = DPTraining(0.5, 0.1, start, 1e-5, batch_size=200, clip_quantile=0.5)
        optimizer = run.wrap(model, torch.optim.SGD(model.parameters(), lr=0.0))
        bounds = []
        for _ in range(120):
            run.backward(model(x).squeeze(1))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bounds.append(run.max_grad_norm)
        assert (bounds[0] > start) == (first_move == "up")
        assert 75 < sum(bounds[-20:]) / 20 < 130, bounds[-20:]  # the median norm is 100.5
        assert run.module.max_grad_norm == optimizer.max_grad_norm == run.max_grad_norm
    assert optimizer.noise_multiplier ** -2 == pytest.approx(0.5 ** -2 - (2 * 200 / 20) ** -2)
    assert all(sigma == 0.5 for sigma, _, _ in run.accountant.history)
    assert run.card()["clip_start"] == 1000.0 and run.card()["max_grad_norm"] == run.max_grad_norm


def test_empty_poisson_batch_steps_with_noise_only():
    model = torch.nn.Linear(3, 2)
    run = DPTraining(1.0, 0.01, 1.0, 1e-5, batch_size=8)
    optimizer = run.wrap(model, torch.optim.SGD(model.parameters(), lr=1.0))
    before = model.weight.detach().clone()
    run.before_step(model, empty=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    assert not torch.equal(before, model.weight) and len(run.accountant) == 1


def test_dp_run_accounting_resume_and_saved_model(tiny_cfg, tmp_path, interrupted):
    from opacus.accountants import RDPAccountant
    from transformers import AutoModelForSequenceClassification

    straight, w_straight = _train(tiny_cfg(*DP_RUN, f"output_dir={tmp_path / 'straight'}"))
    assert straight.steps == 6
    records = [r for r in straight.history if "eval_accuracy" in r]
    assert all("dp_epsilon" in r and r["dp_delta"] == pytest.approx(1 / 2160) for r in records)
    eps = _last_epsilon(straight)
    assert 0 < eps <= 8 + 1e-6  # (c) the target is met over the planned steps

    # (b) a fresh accountant fed the run's (noise multiplier, q, steps) agrees
    sigma = build_dp(tiny_cfg(*DP_RUN), CLASSIFIER, 216, 6, 1).noise_multiplier
    fresh = RDPAccountant()
    for _ in range(6):
        fresh.step(noise_multiplier=sigma, sample_rate=16 / 216)
    assert eps == pytest.approx(fresh.get_epsilon(delta=1 / 2160), rel=1e-9)

    # (e) best/ is a plain transformers folder whose card states the epsilon spent when it was saved
    loaded = AutoModelForSequenceClassification.from_pretrained(straight.best_dir)
    assert not hasattr(loaded, "_module") and loaded.num_labels == 2
    card = json.loads((straight.best_dir / "privacy.json").read_text())
    assert card["epsilon"] in [pytest.approx(r["dp_epsilon"]) for r in records] and card["steps"] in (3, 6)
    assert f"{card['epsilon']:.4g}" in (straight.best_dir / "README.md").read_text()

    # (d) interrupted during step 5 (after the checkpoint at step 3), then resumed
    out = tmp_path / "killed"
    task_cls = type(build_task("classification", tiny_cfg()))
    interrupted(task_cls, 4, lambda: _train(tiny_cfg(*DP_RUN, f"output_dir={out}")))
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 3

    resumed, w_resumed = _train(tiny_cfg(*DP_RUN, f"output_dir={out}", "train.resume=true"))
    assert resumed.steps == 6
    assert _last_epsilon(resumed) == pytest.approx(eps, rel=1e-12)
    for key in w_straight:  # noise comes from torch's RNG, which the checkpoint restores
        torch.testing.assert_close(w_resumed[key], w_straight[key], rtol=0, atol=0)


def test_privacy_keys_are_config_options():
    keys = {key for key, _, _ in config.describe()}
    assert {"privacy.dp.target_epsilon", "privacy.dp.delta", "privacy.dp.noise_multiplier",
            "privacy.dp.max_grad_norm", "privacy.dp.clip_quantile", "privacy.dp.accountant"} <= keys


def test_finetune_reports_the_budget_in_metrics(tiny_cfg):
    import json
    from pathlib import Path

    from lmforge.commands import finetune

    cfg = tiny_cfg("privacy.dp.target_epsilon=8", "train.epochs=1")
    metrics = finetune.run(cfg)
    assert 0 < metrics["dp_epsilon"] <= 8 + 1e-6 and 0 < metrics["dp_delta"] < 1 / 216
    saved = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert saved["dp_epsilon"] == metrics["dp_epsilon"]
    assert "DP-SGD" in (Path(cfg.output_dir) / "report.html").read_text(encoding="utf-8")


def test_clipped_training_learns_with_micro_batches(tiny_cfg):
    """End to end through the loop: with negligible noise, clipped per-example gradients summed over
    two micro-batches per Poisson batch learn the fixture (a second pass with a wrong sign or a zero
    scale would not; the exact sum is checked in test_each_example_is_clipped_to_max_grad_norm)."""
    from lmforge.commands import finetune

    metrics = finetune.run(tiny_cfg("privacy.dp.noise_multiplier=1e-6", "privacy.dp.max_grad_norm=0.1",
                                    "train.grad_accum=2", "train.epochs=4"))
    assert metrics["accuracy"] >= 0.9


def test_tied_embeddings_are_refused_until_frozen():
    """Ghost clipping cannot add up the norms of one weight used by two layers (a decoder's
    embeddings tied to its head); freezing the embeddings (train.freeze_embeddings) is the way out."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    def tied():
        return AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            tie_word_embeddings=True))

    model = tied()
    with pytest.raises(LmforgeError, match=r"embed_tokens\.weight and lm_head\.weight.*tied"):
        DPTraining(1.0, 0.1, 1.0, 1e-5, 4).wrap(model, torch.optim.SGD(model.parameters(), lr=0.1))
    model, run = tied(), DPTraining(1.0, 0.1, 1.0, 1e-5, 4)
    assert freeze_embeddings(model) == 40 * 16
    assert not model.lm_head.weight.requires_grad and model.model.layers[0].mlp.up_proj.weight.requires_grad
    run.wrap(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1))
