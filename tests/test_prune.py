"""Head pruning: importance picks heads, pruned heads stay zero through recovery, plain transformers loads it."""

from pathlib import Path

import pytest
import torch

from lmforge import config
from lmforge.cli import main
from lmforge.commands import prune as prune_command
from lmforge.compress import prune


@pytest.fixture
def trained(tiny_classifier) -> Path:
    """A tiny classifier (2 layers of 2 heads), trained on the tiny data (shared session fixture)."""
    return tiny_classifier


def _tiny_model(heads: int = 4):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=heads,
                     intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(cfg).eval()


def test_choose_heads_lowest_first_keeping_one_per_layer():
    importance = torch.tensor([[0.9, 0.1, 0.5, 0.2], [0.01, 0.02, 0.03, 0.04]])
    assert prune.choose_heads(importance, 0.25) == {1: [0, 1]}
    # layer 1 holds the 4 least important heads, but one of them must stay
    assert prune.choose_heads(importance, 0.5) == {0: [1], 1: [0, 1, 2]}
    with pytest.raises(Exception, match="--heads"):
        prune.choose_heads(importance, 1.0)


def test_zeroed_head_equals_a_gate_of_zero():
    """Pruning by zeroing weights computes exactly what masking the head's output does."""
    model = _tiny_model()
    ids = torch.randint(5, 50, (3, 7))
    layers = prune.attention_layers(model)
    gates = torch.ones(2, 4)
    gates[0, 2] = gates[1, 0] = 0
    hooks = [a.output.register_forward_pre_hook(prune._gate(gates, i, a.size)) for i, a in enumerate(layers)]
    with torch.no_grad():
        gated = model(input_ids=ids).logits
    for hook in hooks:
        hook.remove()
    prune.prune_heads(model, {0: [2], 1: [0]})
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, gated)
    assert prune.active_heads(model) == [3, 3] and model.config.pruned_heads == {"0": [2], "1": [0]}


def test_masks_keep_pruned_weights_zero_under_adamw():
    model = _tiny_model()
    masks = prune.merge(prune.prune_heads(model, {0: [1]}), prune.prune_linear(model, 0.5))
    hooks = prune.keep_zero(masks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        model(input_ids=torch.randint(5, 50, (2, 6)), labels=torch.tensor([0, 1])).loss.backward()
        opt.step()
        opt.zero_grad()
    for hook in hooks:
        hook.remove()
    assert prune.active_heads(model) == [3, 4]
    weight = model.bert.encoder.layer[1].intermediate.dense.weight
    assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_prune_recovers_and_loads_with_plain_transformers(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "pruned"
    metrics = prune_command.run(str(trained), str(out), heads=0.5, recover_steps=6, importance_batches=4,
                                overrides=["train.precision=fp32"])
    assert metrics["heads_pruned"] == 2 and metrics["heads_total"] == 4
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert sum(prune.active_heads(model)) == 2 and sum(len(h) for h in model.config.pruned_heads.values()) == 2
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        probs = model(**tokenizer(["很好 服务", "很差 房间"], return_tensors="pt", padding=True)).logits.softmax(-1)
    assert probs.shape == (2, 2)
    assert metrics["accuracy"] > 0.6 and 0 <= metrics["original_agreement"] <= 1


def test_cli_prune_with_overrides_after_flags(tiny, trained, tmp_path):
    out = tmp_path / "pruned"
    code = main(["prune", str(trained), "--heads", "0.25", "--recover-steps", "0", "--out", str(out),
                 "train.batch_size=8", "train.precision=fp32"])
    assert code == 0 and (out / "metrics.json").is_file()
    assert config.load(out / "lmforge.yaml").train.batch_size == 8
    assert main(["predict", str(out), "--input", str(tiny / "test.csv"), "--output", str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 60
    with pytest.raises(SystemExit):  # a leftover that is not key=value is still a usage error
        main(["prune", str(trained), "--out", str(tmp_path / "x"), "--heads", "0.5", "oops"])
