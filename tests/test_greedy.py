"""lmforge's own greedy loop (static cache, prompt-lookup drafts) gives the tokens of `generate`."""

import copy

import pytest
import torch

from lmforge.greedy import Plan, decode, lookup, supports
from lmforge.models.packed import pack_linears

STOP = 10  # ends two of the four answers early (after 12 and 7 tokens), the others run to the limit


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def prompts():
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(6, 64, (n,), generator=generator).tolist() for n in (5, 12, 9, 3)]


def _reference(model, prompt: list[int], new: int, stop: int | None) -> list[int]:
    """Plain greedy `generate` on one unpadded prompt, cut after its first stop token."""
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=new, do_sample=False, pad_token_id=0,
                             eos_token_id=stop)[0, len(prompt):].tolist()
    return out[: out.index(stop) + 1] if stop in out else out


def _left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.mark.parametrize("plan", [Plan(), Plan(draft=4), Plan(draft=3, min_ngram=1)], ids=str)
def test_same_tokens_as_generate_alone_and_left_padded(llama, prompts, plan):
    assert supports(llama)
    for stop in (None, STOP):  # without a stop rows run to the limit; with one they end apart
        expected = [_reference(llama, p, 40, stop) for p in prompts]
        stops = set() if stop is None else {stop}
        alone = [decode(llama, *_left_padded([p]), 40, stops, plan).rows[0] for p in prompts]
        batched = decode(llama, *_left_padded(prompts), 40, stops, plan)
        assert alone == expected
        assert batched.rows == expected
    if plan.draft:  # a random model falls into loops: its own history drafts them
        assert batched.accepted > 0 and batched.forwards < 40 - 1


def test_drafts_come_from_the_latest_earlier_ngram():
    history = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 4, 1, 2, 3]
    assert lookup(history, Plan(draft=2, max_ngram=3)) == [7, 8]  # the latest earlier "1 2 3"
    assert lookup(history, Plan(draft=5, max_ngram=2)) == [7, 8, 4, 1, 2]
    assert lookup([4, 5, 6], Plan(draft=3)) == [] and lookup(history, Plan()) == []


def test_generate_keeps_what_the_own_loop_does_not_do(llama):
    """Sampling, a repetition penalty, stop strings and logits settings saved with a checkpoint stay with
    `generate`; plain greedy decoding of a decoder runs the own loop."""
    from dataclasses import replace

    from lmforge.config import GenerationConfig
    from lmforge.decoding import lean_greedy

    greedy = GenerationConfig()
    assert lean_greedy(llama, greedy)
    for other in (replace(greedy, do_sample=True), replace(greedy, repetition_penalty=1.2),
                  replace(greedy, stop=["\n"])):
        assert not lean_greedy(llama, other)
    llama.generation_config.suppress_tokens = [3]
    try:
        assert not lean_greedy(llama, greedy)
    finally:
        llama.generation_config.suppress_tokens = None


def test_own_loop_only_for_a_lone_prompt_with_a_lever(llama):
    """Plain greedy and batches stay with `generate` (the own loop was slower there in the bench); a lone
    prompt with prompt lookup or a compiled step runs the own loop."""
    from dataclasses import replace

    from lmforge.config import GenerationConfig
    from lmforge.decoding import own_loop

    plain = GenerationConfig()
    assert not own_loop(llama, plain, 1)
    for lever in (replace(plain, prompt_lookup=4), replace(plain, compile=True)):
        assert own_loop(llama, lever, 1) and not own_loop(llama, lever, 2)
        assert not own_loop(llama, replace(lever, do_sample=True), 1)


def test_listen_sees_every_token_once_and_can_stop(llama, prompts):
    heard: list[int] = []

    def listen(appended):
        heard.extend(appended[0])
        return False

    full = decode(llama, *_left_padded(prompts[:1]), 30, set(), Plan(draft=4), listen)
    assert heard == full.rows[0] and len(heard) == 30
    calls = []
    cut = decode(llama, *_left_padded(prompts[:1]), 30, set(), Plan(), lambda appended: calls.append(1) or len(calls) == 3)
    assert cut.rows[0] == full.rows[0][:3]  # stopped after the third hand-over: one token each without drafts


@pytest.mark.slow
def test_compiled_step_gives_the_same_tokens(llama, prompts):
    """torch.compile'd steps (decoding and draft verification) on a left-padded batch: generate's tokens."""
    plan = Plan(draft=3, compile=True)
    expected = [_reference(llama, p, 24, STOP) for p in prompts[:2]]
    assert decode(llama, *_left_padded(prompts[:2]), 24, {STOP}, plan).rows == expected
    packed = copy.deepcopy(llama)  # as `lmforge.load` gives it: compiling traces the plain product
    pack_linears(packed)
    assert decode(packed, *_left_padded(prompts[:2]), 24, {STOP}, plan).rows == expected
