"""CPU training kernels (train/cpu_training.py): the same dropout and attention as torch's, computed faster."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.train import cpu_training
from lmforge.train.cpu_training import CheapDropout, keep_mask, training_attention, use_cpu_training_kernels


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_keep_each_element_with_probability_1_minus_p_and_rescale_exactly(p):
    torch.manual_seed(0)
    mask, scale = keep_mask((1000, 2000), p)
    n = mask.numel()
    kept = mask.float().mean().item()
    assert abs(kept - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5 + 2**-17  # within noise (and 16-bit rounding of p)
    assert abs(scale - 1 / (1 - p)) < 1e-4 and mask.shape == (1000, 2000)
    # unbiased: the exact keep rate of the threshold times the scale is 1
    assert abs((1 - round(p * 2**16) / 2**16) * scale - 1) < 1e-12
    # neighbouring elements are independent (they share 64-bit draws)
    pairs = mask.flatten()[: n - n % 4].view(-1, 4).float()
    assert abs((pairs[:, 0] * pairs[:, 1]).mean().item() - kept * kept) < 0.01


def test_masks_come_from_torchs_generator_so_a_restored_state_repeats_them():
    torch.manual_seed(3)
    state = torch.get_rng_state()
    first = keep_mask((64, 33), 0.1)[0]
    torch.set_rng_state(state)
    assert torch.equal(keep_mask((64, 33), 0.1)[0], first)
    assert not torch.equal(keep_mask((64, 33), 0.1)[0], first)


def test_cheap_dropout_zeroes_or_rescales_and_backpropagates_through_the_same_mask():
    layer = CheapDropout(0.25)
    assert isinstance(layer, torch.nn.Dropout)  # set_dropout and friends still find it
    x = torch.full((200, 300), 2.0, requires_grad=True)
    out = layer(x)
    scale = 2**16 / (2**16 - round(0.25 * 2**16))
    kept = out != 0
    assert torch.allclose(out[kept], torch.tensor(2 * scale)) and 0.7 < kept.float().mean() < 0.8
    out.sum().backward()
    assert torch.equal(x.grad, kept.float() * scale)
    assert torch.equal(layer.eval()(x), x)


class _Attention(torch.nn.Module):  # what the attention function reads of the layer calling it
    is_causal = False


def test_attention_dropout_applies_the_mask_to_the_attention_probabilities(monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 16) for _ in range(3))
    padding = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    padding[1, :, :, 5:] = False
    fixed = torch.rand(2, 4, 7, 7) > 0.3
    monkeypatch.setattr(cpu_training, "keep_mask", lambda shape, p, device=None: (fixed, 1 / 0.7))
    out, _ = training_attention(_Attention(), q, k, v, padding, dropout=0.3, scaling=0.25)
    scores = (q @ k.transpose(-1, -2) * 0.25).masked_fill(~padding, float("-inf"))
    reference = (torch.softmax(scores, -1) * fixed / 0.7) @ v
    torch.testing.assert_close(out, reference.transpose(1, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("rate", [0.0, 0.1])
def test_attention_is_torchs_cpu_sdpa_math_kernel_to_the_bit(monkeypatch, dtype, causal, rate):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 16, dtype=dtype, requires_grad=True) for _ in range(3))
    padding = None if causal else torch.ones(2, 1, 9, 9, dtype=torch.bool)
    if padding is not None:
        padding[0, :, :, 6:] = False
    module = _Attention()
    module.is_causal = causal
    # with dropout on, a mask that keeps everything, unscaled: what is left is the attention itself
    monkeypatch.setattr(cpu_training, "keep_mask", lambda shape, p, device=None: (torch.ones(shape, dtype=torch.bool), 1.0))
    out, _ = training_attention(module, q, k, v, padding, dropout=rate, scaling=0.25)
    with sdpa_kernel(SDPBackend.MATH):  # the kernel torch picks whenever dropout is on
        torch_sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=padding, scale=0.25,
                                                                      is_causal=causal)
    assert out.dtype == dtype and torch.equal(out, torch_sdpa.transpose(1, 2))
    ours = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    theirs = torch.autograd.grad(torch_sdpa.transpose(1, 2).float().square().sum(), (q, k, v))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_a_model_predicts_the_same_and_saves_the_same_config(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64))
    ids = torch.randint(0, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    model.eval()
    before = model(input_ids=ids, attention_mask=mask).logits
    assert use_cpu_training_kernels(model, torch.device("meta")) == 0  # a GPU's dropout is fast already
    # embeddings, 2 x (attention output, feed-forward output), the head, and 2 attention modules holding a rate
    assert use_cpu_training_kernels(model, torch.device("cpu")) == 8
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)  # eval: no dropout at all
    model.train()
    torch.manual_seed(1)
    first = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.equal(first, before)  # training: dropout is on
    torch.manual_seed(1)
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, first)
    model.save_pretrained(tmp_path)
    assert "lmforge" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
