"""The automatic recipe (train.lr / batch_size / epochs = 0) and the collapse guard."""

import numpy as np
import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification

from lmforge import config
from lmforge.evaluate.metrics import classification_metrics
from lmforge.train import recipe


def _bert(vocab: int, hidden: int, layers: int) -> BertForSequenceClassification:
    return BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                                    num_attention_heads=2, intermediate_size=2 * hidden))


@pytest.mark.parametrize("overrides, expected_lr", [
    (["model.preset=tiny"], 5e-4),                 # random weights
    (["model.path=some/folder"], 1e-4),            # a small pretrained body
    (["model.path=some/folder", "method=lora"], 5e-4),
    (["model.path=some/folder", "train.freeze_layers=1"], 1e-3),  # every layer frozen: only the head trains
])
def test_learning_rate_follows_what_is_trained(overrides, expected_lr):
    cfg = config.load(None, overrides)
    resolved = recipe.resolve(cfg, _bert(1000, 32, 1), 800)
    assert resolved.train.lr == expected_lr
    top_layers_only = config.load(None, ["model.path=some/folder", "train.freeze_layers=1"])
    assert recipe.resolve(top_layers_only, _bert(1000, 32, 2), 800).train.lr == 1e-4


def test_a_large_body_gets_the_lower_rate_and_the_embedding_table_does_not_count():
    cfg = config.load(None, ["model.path=x"])
    # ~3.2M parameters, nearly all in a 100k-row table: still a small body
    assert recipe.resolve(cfg, _bert(100_000, 32, 1), 800).train.lr == 1e-4
    big = _bert(100, 1024, 8)  # ~68M parameters in the body
    assert recipe.body_parameters(big) > recipe.SMALL_BODY
    assert recipe.resolve(cfg, big, 800).train.lr == 5e-5


@pytest.mark.parametrize("n, batch, epochs", [(300, 8, 16), (800, 16, 12), (5000, 32, 4), (100_000, 32, 1)])
def test_small_data_gets_enough_steps(n, batch, epochs):
    resolved = recipe.resolve(config.load(None, ["model.preset=tiny"]), _bert(100, 16, 1), n)
    assert (resolved.train.batch_size, resolved.train.epochs) == (batch, epochs)
    steps = epochs * -(-n // batch)
    assert steps >= recipe.STEP_FLOOR or epochs == recipe.MAX_EPOCHS or n >= 100_000


def test_a_pretrained_multilingual_size_table_is_frozen_unless_told_otherwise():
    from transformers import LlamaConfig, LlamaForCausalLM

    large, small = _bert(recipe.LARGE_TABLE, 8, 1), _bert(recipe.LARGE_TABLE - 1, 8, 1)
    pretrained = config.load(None, ["model.path=x"])
    assert recipe.resolve(pretrained, large, 800).train.freeze_embeddings is True
    assert recipe.resolve(pretrained, small, 800).train.freeze_embeddings is False
    assert recipe.resolve(config.load(None, ["model.preset=tiny"]), large, 800).train.freeze_embeddings is False
    told = config.load(None, ["model.path=x", "train.freeze_embeddings=false"])
    assert recipe.resolve(told, large, 800).train.freeze_embeddings is False
    tied = LlamaForCausalLM(LlamaConfig(vocab_size=recipe.LARGE_TABLE, hidden_size=8, intermediate_size=16,
                                        num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=True))
    assert recipe.resolve(pretrained, tied, 800).train.freeze_embeddings is False  # its head would freeze too


def test_explicit_keys_win_and_a_step_budget_decides_the_epochs():
    model = _bert(100, 16, 1)
    explicit = recipe.resolve(config.load(None, ["train.lr=3e-5", "train.batch_size=4", "train.epochs=2"]), model, 800)
    assert (explicit.train.lr, explicit.train.batch_size, explicit.train.epochs) == (3e-5, 4, 2)
    budget = recipe.resolve(config.load(None, ["train.max_steps=100", "train.batch_size=16"]), model, 800)
    assert budget.train.epochs == 2  # 50 batches per epoch: 2 passes reach 100 steps


def test_the_run_logs_and_saves_the_resolved_recipe(tiny_cfg, tmp_path, caplog):
    from lmforge.run import train

    cfg = tiny_cfg("train.lr=0", "train.batch_size=0", "train.epochs=0", "train.max_steps=3")
    with caplog.at_level("INFO", logger="lmforge"):
        train(cfg)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auto:")]
    assert len(said) == 1 and "lr 0.002" not in said[0] and "lr 0.0005 for a model from random weights" in said[0]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert saved["lr"] == 5e-4 and saved["batch_size"] == 8 and saved["epochs"] > 0


def test_collapse_guard_flags_one_class_predictions_only_when_labels_are_mixed():
    labels = ["neg", "pos"]
    truth = np.array([0] * 50 + [1] * 50)
    collapsed = classification_metrics(truth, np.zeros(100, int), None, labels)
    assert len(collapsed["warnings"]) == 1 and "'neg' for 100%" in collapsed["warnings"][0]
    fine = classification_metrics(truth, np.array([0] * 60 + [1] * 40), None, labels)
    assert fine["warnings"] == []
    skewed_truth = np.array([0] * 98 + [1] * 2)  # the labels themselves are one class: nothing to warn about
    assert classification_metrics(skewed_truth, np.zeros(100, int), None, labels)["warnings"] == []


def test_a_collapsed_model_is_said_first_in_its_report(tiny_cfg, tmp_path):
    from lmforge.commands.finetune import run

    # a rate of 1e-12 leaves the random head where it started: one class for (nearly) every text
    metrics = run(tiny_cfg("train.lr=1e-12", "train.max_steps=1"))
    assert metrics["warnings"] and metrics["warnings"][0].startswith("COLLAPSED")
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "COLLAPSED" in report


def test_frozen_embeddings_stay_unchanged_while_the_rest_trains(tiny_cfg):
    from lmforge.run import fit_prepared, prepare

    prepared = prepare(tiny_cfg("train.freeze_embeddings=true", "train.max_steps=2"))
    table = prepared.model.get_input_embeddings().weight.detach().clone()
    body = {k: v.detach().clone() for k, v in prepared.model.named_parameters() if "encoder" in k}
    fit_prepared(prepared)
    assert torch.equal(prepared.model.get_input_embeddings().weight, table)
    assert any(not torch.equal(p, body[k]) for k, p in prepared.model.named_parameters() if k in body)


def test_frozen_bottom_layers_get_no_gradient_and_the_top_trains(tiny_cfg):
    """train.freeze_layers=1 on a 2-layer model: embeddings and layer 0 unchanged after training and
    without gradients (so backward stops above them); layer 1, pooler and head move."""
    from lmforge.run import fit_prepared, prepare

    prepared = prepare(tiny_cfg("train.freeze_layers=1", "train.max_steps=2", "train.lr=1e-2"))
    before = {k: v.detach().clone() for k, v in prepared.model.named_parameters()}
    fit_prepared(prepared)
    after = dict(prepared.model.named_parameters())
    frozen = [k for k in before if ".embeddings." in k or ".layer.0." in k]
    moved = [k for k in before if ".layer.1." in k or "classifier" in k]
    assert frozen and moved
    assert all(torch.equal(after[k], before[k]) and after[k].grad is None for k in frozen)
    assert all(not torch.equal(after[k], before[k]) for k in moved if k.endswith("weight"))


def test_freezing_more_layers_than_the_model_has_names_the_key(tiny_cfg):
    from lmforge.errors import LmforgeError
    from lmforge.run import fit_prepared, prepare

    with pytest.raises(LmforgeError, match="train.freeze_layers=3: the model has only 2"):
        fit_prepared(prepare(tiny_cfg("train.freeze_layers=3", "train.max_steps=1")))
