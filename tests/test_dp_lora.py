"""DP-SGD for LoRA SFT (per-example clipping of adapters on a tiny Llama) and the model card."""

import json

import pytest
import torch
from test_generation import bpe, qa_file  # noqa: F401  (fixtures: tiny BPE tokenizer, Q&A file)

from lmforge import config
from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.privacy.card import read_privacy
from lmforge.privacy.dp import DPTraining
from lmforge.train.checkpoint import save_model_folder


def _lora_llama(targets):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                        num_attention_heads=4, num_key_value_heads=2,
                                                        intermediate_size=64))
    model = get_peft_model(base, LoraConfig(r=4, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # peft starts B at 0; random B makes A's gradients non-zero
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def _example_losses(model, ids, mask):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                             reduction="none").sum(1)


def test_lora_adapters_are_clipped_per_example_and_the_base_gets_nothing():
    model = _lora_llama("all-linear")
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3, [1] * 4 + [0] * 5])  # padded, as in SFT batches
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    singles = [torch.autograd.grad(_example_losses(model, ids[i : i + 1], mask[i : i + 1]).sum(),
                                   list(trainable.values())) for i in range(3)]
    norms = torch.stack([torch.sqrt(sum((g**2).sum() for g in grads)) for grads in singles])
    clip = float(norms.median())  # one example under the bound, one at it, one over
    expected = [sum(min(1.0, clip / (float(n) + 1e-6)) * grads[k] for grads, n in zip(singles, norms))
                for k in range(len(trainable))]

    run = DPTraining(1.0, 0.1, clip, 1e-5, 3)
    run.wrap(model, torch.optim.SGD(trainable.values(), lr=0.1))
    run.backward(_example_losses(model, ids, mask))
    assert len(trainable) == 2 * 7 * 2  # A and B of 7 linear layers x 2 blocks
    torch.testing.assert_close(run.module.per_sample_gradient_norms, norms, rtol=1e-4, atol=1e-6)
    for (name, p), e in zip(trainable.items(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6, msg=name)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_lora_on_embeddings_is_refused_naming_the_parameters():
    model = _lora_llama(["embed_tokens", "q_proj"])
    with pytest.raises(LmforgeError, match=r"embed_tokens\.lora_embedding_A\.default.*\n.*lora_embedding_B"):
        DPTraining(1.0, 0.1, 1.0, 1e-5, 3).wrap(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_model_card_states_the_guarantee_or_its_absence(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n")
    tok = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    model = BertForSequenceClassification(BertConfig(vocab_size=6, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=1, intermediate_size=8))
    cfg = config.load(None, ["model.preset=tiny"])
    save_model_folder(tmp_path / "plain", model, tok, cfg)
    assert "no differential privacy" in (tmp_path / "plain" / "README.md").read_text()
    assert read_privacy(tmp_path / "plain") is None
    spent = {"epsilon": 7.93, "delta": 1e-5, "noise_multiplier": 0.71, "max_grad_norm": 1.0, "sample_rate": 0.0123,
             "batch_size": 64, "steps": 812, "accountant": "prv"}
    save_model_folder(tmp_path / "dp", model, tok, config.load(None, ["privacy.dp.target_epsilon=8"]), privacy=spent)
    card = (tmp_path / "dp" / "README.md").read_text()
    for shown in ["(7.93, 1e-05)-DP", "| noise multiplier | 0.71 |", "| clipping bound (max_grad_norm) | 1 |",
                  "| sampling rate (Poisson) | 0.0123 |", "| steps | 812 |", "| accountant | prv |"]:
        assert shown in card
    assert read_privacy(tmp_path / "dp") == spent


def test_dp_lora_sft_runs_and_reports_epsilon(bpe, qa_file, tmp_path):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.presets import decoder_config

    tok = AutoTokenizer.from_pretrained(bpe)
    base = tmp_path / "base"
    AutoModelForCausalLM.from_config(decoder_config("tiny", len(tok), tok, 128)).save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "run"
    assert main(["finetune", "task=generation", "method=lora", f"data.train={qa_file}", f"data.validation={qa_file}",
                 f"model.path={base}", f"output_dir={out}", "train.batch_size=8", "train.max_steps=4",
                 "train.eval_every=2", "train.precision=fp32", "generation.max_new_tokens=4",
                 "privacy.dp.target_epsilon=8", "privacy.dp.delta=1e-3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["dp_epsilon"] <= 8 + 1e-6 and metrics["dp_delta"] == 1e-3
    assert (out / "best" / "adapter_config.json").is_file()
    assert "DP-SGD" in (out / "best" / "README.md").read_text()
