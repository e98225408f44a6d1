"""What a transformers model runs while it trains on a CPU: cheaper dropout masks, and the faster of
torch's two attention kernels. The same functions, computed faster; evaluation and inference are untouched.

Dropout: torch's CPU dropout draws every mask element as a Bernoulli sample made of a double-precision
uniform (two 32-bit Mersenne-Twister draws, one element at a time; MKL's vectorised generator is used on
Intel CPUs only). On the 2-core AMD EPYC box that was 18% of a fine-tuning step of the `mini` encoder,
more than the attention matmuls. Here an element costs a quarter of one 64-bit draw: 16 random bits
compared with the threshold round(p * 2^16), so an element is dropped with probability within 2^-17 of
p, and kept ones are scaled by the exact inverse of their keep rate (the output's expectation is the
input's, as with torch's dropout): 1.3 ms instead of 6.6 ms per million elements. The draws come from
torch's default generator, so a checkpoint's RNG state still makes a resumed run continue exactly.

Attention: with dropout on, torch's SDPA always runs its math kernel (its flash kernel has no dropout);
without, it picks the flash kernel, whose backward pass is slow on a CPU: forward + backward of 64 x 128
positions, 4 heads of 64, bf16, took 58.7 ms flash against 46.8 ms math (causal: 67.1 against 44.8).
`training_attention` is that math kernel's computation, to the bit (bf16/fp16 widened to fp32, the scale
split over q and k, a safe softmax), given the cheap dropout mask.
"""

from __future__ import annotations

import math
from typing import Any

import torch

BITS = 16
ATTENTION = "lmforge_cpu_training"  # the attention implementation registered below


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None
              ) -> tuple[torch.Tensor, float]:
    """(mask, scale): a bool mask keeping each element with probability ~1 - p, and 1 / its exact keep rate."""
    n = math.prod(shape)
    words = torch.empty(-(-n * BITS // 64), dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)
    threshold = round(p * 2**BITS)
    draws = words.view(torch.int16)[:n].view(shape)  # four uniform 16-bit draws per 64-bit word
    mask = draws >= threshold - 2**(BITS - 1)  # int16 is signed: uniform over [-2^15, 2^15)
    return mask, 2**BITS / (2**BITS - threshold)


class CheapDropout(torch.nn.Dropout):
    """`nn.Dropout` with masks from `keep_mask` (still an `nn.Dropout`: rates are set and read as before)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask, scale = keep_mask(x.shape, self.p, x.device)
        return torch.where(mask, x * scale, 0.0)


def training_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                       is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' `sdpa` attention; while `module` trains, computed as torch's SDPA math kernel computes
    it, with its dropout mask (if any) from `keep_mask`."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if not module.training or any(kwargs.get(extra) is not None for extra in ("position_bias", "softcap")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal  # as transformers' sdpa decides it
    dtype = query.dtype
    q, k, v = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t for t in (query, key, value))
    root = math.sqrt(scaling if scaling is not None else 1 / math.sqrt(q.shape[-1]))
    scores = (q * root) @ (k.transpose(-2, -1) * root)
    if causal:
        attention_mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
    if attention_mask is not None:
        scores = scores + (torch.where(attention_mask, 0.0, float("-inf")) if attention_mask.dtype == torch.bool
                           else attention_mask)
    probs = torch._safe_softmax(scores, -1)
    if dropout:
        keep, scale = keep_mask(scores.shape, dropout, q.device)
        probs, v = torch.where(keep, probs, 0.0), v * scale
    return (probs @ v).to(dtype).transpose(1, 2).contiguous(), None


def use_cpu_training_kernels(model: torch.nn.Module, device: torch.device) -> int:
    """When `model` trains on the CPU (a GPU's dropout is one fused kernel, its flash attention fast): its
    `nn.Dropout` layers become `CheapDropout` and its attention, when it is transformers' `sdpa`, becomes
    `training_attention`. Returns the number of layers changed."""
    if device.type != "cpu":
        return 0
    _register()
    changed = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout:
                cheap = CheapDropout(child.p, child.inplace)
                setattr(parent, name, cheap.train(child.training))
                changed += 1
    for config in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        if getattr(config, "_attn_implementation", None) == "sdpa":
            config._attn_implementation = ATTENTION  # not saved with the model (transformers never writes it)
    return changed


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, training_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the same masks as `sdpa`
