"""Chunked projection + cross-entropy (models.lm_head): the same losses and gradients as the full logits."""

from __future__ import annotations

import pytest
import torch

from lmforge.models import lm_head
from lmforge.models.lm_head import projects_plainly, token_losses


def _llama(**extra):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True, **extra))


def _bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, hidden_dropout_prob=0, attention_probs_dropout_prob=0))


def _labels(ids: torch.Tensor) -> torch.Tensor:
    """Next-token targets, with a row cut short (ignored positions inside the batch)."""
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    labels[1, 5:] = -100
    return labels


def _losses_and_grads(model, labels, ids, chunked: bool, weights=None, bf16: bool = False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        losses = token_losses(model, labels, chunked=chunked, input_ids=ids)
    (losses.sum() if weights is None else (losses * weights).sum()).backward()
    return losses.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("build", [_llama, _bert], ids=["llama-tied", "bert-mlm-bias"])
@pytest.mark.parametrize("weighted", [False, True], ids=["summed", "per-example-weights"])
def test_chunked_losses_and_gradients_equal_the_full_logits(monkeypatch, build, weighted):
    monkeypatch.setattr(lm_head, "CHUNK_LOGITS", 97 * 4)  # 4 positions per chunk: many chunks, a ragged last one
    monkeypatch.setattr(lm_head, "WEIGHT_ROWS", 9)  # the weight gradient taken every 2 chunks, and at the end
    model = build()
    model.eval()  # no dropout: both passes see the same network
    ids = torch.randint(0, 97, (3, 11))
    labels = _labels(ids)
    weights = torch.rand(3, 1) if weighted else None  # uneven upstream gradients take the exact recompute
    full, full_grads = _losses_and_grads(model, labels, ids, False, weights)
    chunked, chunked_grads = _losses_and_grads(model, labels, ids, True, weights)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == chunked_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(chunked_grads[name], full_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_chunked_bf16_matches_full_within_bf16_rounding(monkeypatch):
    monkeypatch.setattr(lm_head, "CHUNK_LOGITS", 97 * 4)
    model = _llama()
    ids = torch.randint(0, 97, (3, 11))
    full, full_grads = _losses_and_grads(model, _labels(ids), ids, False, bf16=True)
    chunked, chunked_grads = _losses_and_grads(model, _labels(ids), ids, True, bf16=True)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)  # both project in bf16, reduce in fp32
    for name in full_grads:  # the head's gradient sums chunks in fp32 where the full matmul rounds once to bf16
        scale = full_grads[name].abs().max()
        torch.testing.assert_close(chunked_grads[name], full_grads[name], rtol=0, atol=float(scale) / 64, msg=name)


def test_no_full_logits_and_evaluation_matches():
    model = _llama()
    ids = torch.randint(0, 97, (2, 9))
    widths: list[int] = []
    model.lm_head.register_forward_hook(lambda _, args, out: widths.append(out.shape[1]))
    with torch.no_grad():
        full = token_losses(model, _labels(ids), input_ids=ids)
        chunked = token_losses(model, _labels(ids), chunked=True, input_ids=ids)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert widths == [8, 0]  # chunked: the model's own projection ran on no position at all


def test_only_plain_projections_are_chunked():
    from peft import LoraConfig, get_peft_model

    assert projects_plainly(_llama()) and projects_plainly(_bert())
    # logits soft-capped after the projection: the chunked loss would miss the cap
    from transformers import Gemma2Config, Gemma2ForCausalLM

    capped = Gemma2ForCausalLM(Gemma2Config(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            num_key_value_heads=1, head_dim=16, intermediate_size=64,
                                            final_logit_softcapping=0.5))
    assert not projects_plainly(capped)
    lora = get_peft_model(_llama(), LoraConfig(r=2, target_modules=["lm_head"]))
    assert not projects_plainly(lora)  # the layer's weight alone is not what the adapted layer computes
