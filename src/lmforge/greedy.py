"""Greedy decoding of causal LMs in a loop of our own: a preallocated KV cache, an optionally compiled
step, and prompt-lookup drafts verified in one forward pass.

Why not `model.generate`: a 135M model on 2 cores spends a third of each token outside its matmuls
(per-step logits processors, stopping criteria, cache growth by concatenation, mask rebuilding, module
call overhead). Here the cache is allocated once per call, the step's shapes are fixed, so
`torch.compile` can fuse everything around the matmuls once per shape bucket, kept for the process.

Prompt lookup (speculative decoding without a second model): the answer's last n tokens are looked up
in the prompt and the answer so far; the `draft` tokens that followed that n-gram there are fed with
the current token in one forward, and greedy keeps the drafts the model itself would have chosen, plus
the model's next token after them. An answer that copies from its prompt (RAG, extraction, QA over a
passage) gets several tokens per forward; a free-form one pays a slightly wider step now and then.

One mechanism serves prefill, decoding and verification: every row of the batch has its own write
pointer into the cache (rows accept different numbers of drafts), positions count a row's real tokens
(prompts are left-padded), and a query sees its row's real slots up to its own. The tokens are those of
plain greedy decoding (tested on a tiny Llama, batch 1 and left-padded batches); in bf16, a verification
pass may round differently from a one-token pass, as batching already does.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

STEP_BUCKET = 256  # cache lengths round up to a multiple of this: one compiled graph serves many prompts
GROUPED_SDPA = "lmforge_grouped_sdpa"  # the attention function `decode` runs sdpa models with


@dataclass(frozen=True)
class Plan:
    """How `decode` runs: draft tokens per step (0: plain greedy), n-gram sizes it searches, compiled or not."""

    draft: int = 0
    max_ngram: int = 3
    min_ngram: int = 2  # a single matching token drafts too often and too wrongly to pay for the wider step
    compile: bool = False


@dataclass
class Decoded:
    """Generated tokens per row (up to and including a stop token), and what the drafts achieved."""

    rows: list[list[int]]
    forwards: int = 0  # decoding forward passes after the prompt's
    drafted: int = 0  # draft tokens fed for verification
    accepted: int = 0  # of which the model agreed with


def supports(model: Any) -> bool:
    """Whether `model` runs with an external static cache and a 4D mask: transformers marks the decoders
    whose forward compiles with a static cache (Llama, Qwen2, Mistral, ...); others keep `generate`."""
    return bool(getattr(model, "_can_compile_fullgraph", False)) and not model.config.is_encoder_decoder


def grouped_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                 **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, except that grouped-query heads under a mask shared by all heads
    (B, 1, q, L) attend as one packed query per key/value head: transformers' CPU path copies every
    key and value `groups` times instead (under a mask, and always when compiled), which made a
    compiled batch-8 step slower than an eager one (SmolLM2: 3 groups, 30 layers)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kv_heads = key.shape[1]
    groups = query.shape[1] // kv_heads
    if groups == 1 or attention_mask is None or attention_mask.shape[1] != 1 or module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, width, dim = query.shape
    packed = query.reshape(batch, kv_heads, groups * width, dim)  # head h = kv * groups + g: rows g * width + j
    mask = attention_mask.repeat(1, 1, groups, 1) if width > 1 else attention_mask
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, width, dim).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(GROUPED_SDPA, grouped_sdpa)
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)  # masks built by transformers itself stay sdpa's


@contextmanager
def _attention(model: Any) -> Iterator[None]:
    """Run an sdpa model with `grouped_sdpa` (the same attention) for the duration of a decode call."""
    before = model.config._attn_implementation
    if before != "sdpa":
        yield
        return
    _register_attention()
    model.set_attn_implementation(GROUPED_SDPA)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


class SlotCache:
    """Keys and values of every layer, preallocated for the whole answer and written in place at each row's
    slots (the duck-typed `update` that transformers' attention layers call). `visible` slots are what
    attention reads: all of them in a compiled step (fixed shapes), the prompt's during prefill."""

    def __init__(self, model: Any, batch: int, length: int, dtype: torch.dtype, device: torch.device):
        config = model.config.get_text_config(decoder=True)
        heads = config.num_key_value_heads or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (batch, heads, length, head_dim)
        # Zeros, not empty: a masked slot has weight 0, and 0 * NaN garbage would still be NaN.
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.length = self.visible = length
        self.slots = torch.zeros((batch, 1), dtype=torch.long, device=device)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.slots[:, None, :, None].expand(-1, key.shape[1], -1, key.shape[3])
        self.keys[layer_idx].scatter_(2, index, key.to(self.keys[layer_idx].dtype))
        self.values[layer_idx].scatter_(2, index, value.to(self.values[layer_idx].dtype))
        return self.keys[layer_idx][:, :, : self.visible], self.values[layer_idx][:, :, : self.visible]


def _forward(model: Any, cache: SlotCache, ids: torch.Tensor, ptr: torch.Tensor, pads: torch.Tensor,
             last_only: bool = False) -> torch.Tensor:
    """Greedy next tokens after each fed token (B, q), writing the fed tokens at each row's slots ptr, ptr+1, ...

    A query sees its row's real slots (past the left padding) up to its own slot, and always itself so a
    padding query is never fully masked (its output is never read).
    """
    slots = ptr[:, None] + torch.arange(ids.shape[1], device=ids.device)
    seen = torch.arange(cache.visible, device=ids.device)
    end = slots[:, :, None]
    mask = ((seen >= pads[:, None, None]) & (seen <= end)) | (seen == end)
    cache.slots = slots
    logits = model(input_ids=ids, position_ids=(slots - pads[:, None]).clamp_min(0), attention_mask=mask[:, None],
                   cache=cache, use_cache=True, logits_to_keep=1 if last_only else 0).logits
    return logits.argmax(-1)


_COMPILED: list[Callable[..., torch.Tensor]] = []


def compiled_step() -> Callable[..., torch.Tensor]:
    """The decoding step compiled once per process. torch's automatic dynamic shapes: the first graph
    is specialised to its shapes (batch 1 in a server: the fastest code), the next sizes seen make the
    batch, fed-token and cache-length dimensions symbolic, so a handful of graphs serves every request.
    Measured on 2 cores: 40-120 s per graph; inductor's on-disk cache shortens later processes' starts."""
    if not _COMPILED:
        import torch._dynamo

        # Every decoder layer holds its own modules: the default limit would fall back to eager after a few shapes.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        _COMPILED.append(torch.compile(_forward))
    return _COMPILED[0]


@torch.no_grad()
def warm_up(model: Any, plan: Plan, device: torch.device) -> float:
    """Compile the step for the shapes a server meets (one prompt: `decoding.own_loop` leaves batches to
    `generate`; one fed token and 1 + draft; two cache lengths, so the length is compiled symbolic) before
    a request has to wait for it; the seconds it took."""
    start = time.perf_counter()
    zeros = torch.zeros(1, dtype=torch.long, device=device)
    with _attention(model):
        for length in (STEP_BUCKET, 2 * STEP_BUCKET):
            cache = SlotCache(model, 1, length, _cache_dtype(model), device)
            for width in sorted({1, 1 + plan.draft}):
                compiled_step()(model, cache, torch.ones((1, width), dtype=torch.long, device=device), zeros, zeros)
    return time.perf_counter() - start


@torch.no_grad()
def decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           stops: set[int], plan: Plan = Plan(), listen: Callable[[list[list[int]]], bool] | None = None) -> Decoded:
    """Greedy continuations of left-padded prompts: each row's new tokens, ending at its first stop token
    or after `max_new_tokens`. `listen` (streaming) gets each row's new tokens as they come; when it
    returns True, decoding stops there (a client that left)."""
    batch, width = input_ids.shape
    device, dtype = input_ids.device, _cache_dtype(model)
    pads = (attention_mask == 0).sum(1)
    length = -(-(width + max_new_tokens + plan.draft) // STEP_BUCKET) * STEP_BUCKET
    cache = SlotCache(model, batch, length, dtype, device)
    step = compiled_step() if plan.compile else _forward
    with _attention(model):
        return _decode(model, cache, step, input_ids, pads, max_new_tokens, stops, plan, listen)


def _decode(model: Any, cache: SlotCache, step: Callable[..., torch.Tensor], input_ids: torch.Tensor,
            pads: torch.Tensor, max_new_tokens: int, stops: set[int], plan: Plan,
            listen: Callable[[list[list[int]]], bool] | None) -> Decoded:
    batch, width = input_ids.shape
    device = input_ids.device
    cache.visible = width  # the prompt attends to itself only
    first = _forward(model, cache, input_ids, torch.zeros_like(pads), pads, last_only=True)[:, -1].tolist()
    cache.visible = cache.length
    history = [row[int(p):] for row, p in zip(input_ids.tolist(), pads.tolist())]
    out = Decoded([[] for _ in range(batch)])
    done = [False] * batch
    ptr = [width] * batch  # each row's next cache slot: its cached tokens, padding included
    appended = _absorb(out, history, done, [[t] for t in first], max_new_tokens, stops)
    while not (listen and listen(appended)) and not all(done):  # hand over the new tokens, then go on
        drafts = [[] if done[b] else lookup(history[b], plan) for b in range(batch)]
        fed_width = 1 + plan.draft if any(drafts) else 1
        fed = [[out.rows[b][-1]] + (drafts[b] + [0] * fed_width)[: fed_width - 1] for b in range(batch)]
        preds = step(model, cache, torch.tensor(fed, device=device), torch.tensor(ptr, device=device), pads).tolist()
        kept = [_agreed(drafts[b], preds[b]) for b in range(batch)]
        fresh = [k + [p[len(k)]] for k, p in zip(kept, preds)]  # agreed drafts, then the model's own next token
        out.forwards += 1
        out.drafted += sum(len(d) for d in drafts)
        out.accepted += sum(len(k) for k in kept)
        appended = _absorb(out, history, done, fresh, max_new_tokens, stops)
        # The fed token and the agreed drafts are cached now; a finished row's later writes go to slot 0 on.
        ptr = [0 if done[b] else ptr[b] + len(fresh[b]) for b in range(batch)]
    return out


def _absorb(out: Decoded, history: list[list[int]], done: list[bool], fresh: list[list[int]], limit: int,
            stops: set[int]) -> list[list[int]]:
    """Append each unfinished row's new tokens, finishing it at a stop token or at `limit` tokens; the
    tokens each row took."""
    taken: list[list[int]] = []
    for b, tokens in enumerate(fresh):
        taken.append([])
        for token in tokens if not done[b] else []:
            taken[b].append(token)
            out.rows[b].append(token)
            history[b].append(token)
            if token in stops or len(out.rows[b]) >= limit:
                done[b] = True
                break
    return taken


def _agreed(draft: list[int], preds: list[int]) -> list[int]:
    """The longest prefix of `draft` that greedy decoding would have produced (preds[j] follows draft[:j])."""
    kept = []
    for token, pred in zip(draft, preds):
        if token != pred:
            break
        kept.append(token)
    return kept


def lookup(history: list[int], plan: Plan) -> list[int]:
    """Up to `plan.draft` tokens that followed the latest earlier occurrence of the history's last n tokens
    (n from max_ngram down to min_ngram), or none."""
    if plan.draft == 0:
        return []
    end = len(history)
    for n in range(min(plan.max_ngram, end - 1), plan.min_ngram - 1, -1):
        tail = history[end - n :]
        for start in range(end - n - 1, -1, -1):
            if history[start : start + n] == tail:
                return history[start + n : start + n + plan.draft]
    return []


def _cache_dtype(model: Any) -> torch.dtype:
    """The dtype attention computes in: the model's float parameters' (int8 layers keep bf16/fp32 norms)."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())
