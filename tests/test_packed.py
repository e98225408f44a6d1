"""Linear layers with oneDNN-packed weights compute what `torch.nn.Linear` computes, and fall back to it
whenever the packed copy could differ (gradients, a weight changed in place, another dtype)."""

import pytest
import torch

from lmforge.models.packed import PackedLinear, available, pack_linears

pytestmark = pytest.mark.skipif(not available(), reason="this torch build has no oneDNN CPU kernels")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_same_outputs_as_linear_for_any_number_of_rows(dtype, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80, bias=bias).to(dtype)
    packed = PackedLinear(linear)
    with torch.no_grad():
        for shape in [(1, 48), (8, 48), (300, 48), (2, 7, 48)]:
            x = torch.randn(shape, dtype=dtype)
            # the same sums, perhaps added in another order (threads, fp32's other sgemm): equal to rounding
            tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5
            torch.testing.assert_close(packed(x), linear(x), rtol=tolerance, atol=tolerance)
    # the non-packed path is the one an int8 or any other layer would see: same names, same tensors
    assert dict(packed.named_parameters()) == dict(linear.named_parameters())


def test_weight_changed_in_place_is_repacked():
    linear = torch.nn.Linear(16, 16)
    packed = PackedLinear(linear)
    x = torch.randn(4, 16)
    with torch.no_grad():
        before = packed(x)
        linear.weight.mul_(2.0)  # the module shares the parameter: what an optimizer step or load_state_dict does
        after = packed(x)
        assert torch.equal(after, linear(x)) and not torch.equal(after, before)


def test_gradients_flow_through_the_original_weight():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    packed = PackedLinear(linear)
    x = torch.randn(3, 16, requires_grad=True)
    packed(x).square().sum().backward()
    expected = torch.autograd.grad(linear(x).square().sum(), x)[0]
    assert torch.allclose(x.grad, expected) and linear.weight.grad is not None


def test_a_packed_decoder_generates_the_same_tokens_and_keeps_its_ties():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    prompt = torch.randint(3, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    keys = set(model.state_dict())
    assert pack_linears(model) == 2 * 7 + 1  # q k v o gate up down per layer, and the output head
    assert isinstance(model.lm_head, PackedLinear) and model.lm_head.weight is model.model.embed_tokens.weight
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(model.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0), expected)


def test_loading_packs_on_cpu_unless_asked_not_to(tiny_classifier):
    import lmforge

    packed = lmforge.load(str(tiny_classifier))
    plain = lmforge.load(str(tiny_classifier), pack=False)
    assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    texts = ["好评 质量 很好", "差评 太差了", "一般"]
    for a, b in zip(packed.predict(texts), plain.predict(texts)):
        assert a["label"] == b["label"] and a["probs"] == pytest.approx(b["probs"], abs=1e-5)
