"""Token losses with the LM head run only at labelled positions — shared by SFT and pretraining.

The vocabulary projection is the largest matmul of a small LM, and its fp32 logits were most of
SFT's peak memory; yet the loss needs it only where a label is (answer tokens in SFT, the 15% masked
tokens in MLM). A forward pre-hook on the model's output layer gathers those positions, so the
model's own forward still runs unchanged (logit scaling, DDP / peft / Opacus wrappers).

Where every position is labelled (causal-LM pretraining) the gathered logits are still
(batch, length, vocab) in fp32 — 0.5 GB for 64 x 128 x 16k — and the step spends its time moving
them through memory. `chunk` > 0 computes the projection and the cross-entropy a few hundred
positions at a time instead (`chunked_cross_entropy`): the hook hands the model's output layer an
empty slice and the loss is taken from the layer's weight directly, so no full logits exist.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE = -100
CHUNK_LOGITS = 1 << 22  # logits per chunk (16 MB in fp32): one chunk's softmax stays in the CPU's cache
WEIGHT_ROWS = 2048  # positions whose logit gradients are multiplied into the weight gradient at once


def token_losses(model: Any, labels: torch.Tensor, chunked: bool = False, **inputs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (fp32) of `model(**inputs)` at the positions where `labels` != -100.

    `labels[b, t]` is the target for the output at position t (shift before calling for next-token
    prediction). Returns (batch, most labels in a row): each row's losses in position order, then 0.
    `chunked`: compute them with `chunked_cross_entropy` from the output layer's weight (only for a
    model whose logits are that layer's plain projection: see `projects_plainly`).
    """
    positions, target = labelled_positions(labels)
    head = output_layer(model)
    kept: list[torch.Tensor] = []

    def gather(_: Any, args: tuple) -> tuple:
        hidden = _gather(args[0], positions)
        if not chunked:
            return (hidden, *args[1:])
        # taken inside the layer's call, where its parameters are what its own forward would use
        kept.append(chunked_cross_entropy(hidden, head.weight, head.bias, target))
        return (hidden[:, :0], *args[1:])  # the model's own projection then computes nothing

    hook = head.register_forward_pre_hook(gather)
    try:
        logits = model(**inputs).logits
    finally:
        hook.remove()
    if chunked:
        return kept[0]
    return F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=IGNORE, reduction="none")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (fp32, 0 where `target` is -100) of `hidden @ weight.T + bias`, shape `target.shape`,
    in the autocast precision when autocast is on, as the model's own projection would be computed."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    rows = max(1, CHUNK_LOGITS // weight.shape[0])
    flat, targets = hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1)
    if torch.is_grad_enabled():
        losses = _ChunkedCrossEntropy.apply(flat, weight, bias, targets, rows, dtype)
    else:  # evaluation: the losses alone
        with torch.autocast(device, enabled=False):
            losses = _chunks(flat, weight, bias, targets, rows, dtype, False, False)[0]
    return losses.view(target.shape)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Projection + cross-entropy a chunk of positions at a time, with the gradients made in the same
    pass: each chunk's logits are used while they sit in cache and dropped, and the backward pass costs
    no second projection. The gradients are those of the summed loss (what training backpropagates);
    an uneven upstream gradient (per-example weights) gets the weight gradient recomputed exactly."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                target: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
        needs = ctx.needs_input_grad
        with torch.autocast(hidden.device.type, enabled=False):
            losses, d_hidden, d_weight, d_bias = _chunks(hidden, weight, bias, target, rows, dtype,
                                                         needs[0], needs[1] or needs[2])
        ctx.save_for_backward(hidden, weight, bias, target, d_hidden, d_weight, d_bias)
        ctx.rows, ctx.dtype = rows, dtype
        return losses

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        hidden, weight, bias, target, d_hidden, d_weight, d_bias = ctx.saved_tensors
        valid = grad[target != IGNORE]
        if valid.numel() and not bool((valid == valid[0]).all()):  # per-position weights: redo with them
            with torch.autocast(hidden.device.type, enabled=False):
                _, d_hidden, d_weight, d_bias = _chunks(hidden, weight, bias, target, ctx.rows, ctx.dtype,
                                                        ctx.needs_input_grad[0], True, grad)
            scale = 1.0
        else:
            scale = valid[0] if valid.numel() else 0.0
        needs = ctx.needs_input_grad
        return (d_hidden * scale if needs[0] else None, (d_weight * scale).to(weight.dtype) if needs[1] else None,
                (d_bias * scale).to(bias.dtype) if needs[2] and bias is not None else None, None, None, None)


def _chunks(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor,
            rows: int, dtype: torch.dtype, want_hidden: bool, want_weight: bool, weights: torch.Tensor | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Losses, and the gradients of sum(weights x losses) (weights 1 by default) w.r.t. hidden, weight, bias.

    The logits' gradients (softmax - one-hot) go into a buffer of WEIGHT_ROWS positions, multiplied into
    the weight's gradient when it is full: a bf16 product comes out as a (vocab, hidden) tensor to widen to
    fp32 and add, which per chunk of a few hundred positions cost more than the product itself."""
    n, vocab = hidden.shape[0], weight.shape[0]
    w = weight.to(dtype)
    b = bias.to(dtype) if bias is not None else None
    losses = torch.empty(n, dtype=torch.float32, device=hidden.device)
    d_hidden = torch.empty_like(hidden) if want_hidden else None
    d_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_weight else None
    d_bias = torch.zeros(vocab, dtype=torch.float32, device=weight.device) if want_weight and bias is not None else None
    grads = want_hidden or want_weight
    buffer = torch.empty(min(n, max(rows, WEIGHT_ROWS)), vocab, dtype=dtype, device=hidden.device) if grads else None
    done = 0  # positions whose logit gradients are already in d_weight
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        h, t = hidden[start:stop].to(dtype), target[start:stop]
        valid = t != IGNORE
        at = torch.where(valid, t, 0).unsqueeze(1)
        log_probs = torch.log_softmax(F.linear(h, w, b).float(), -1)
        losses[start:stop] = torch.where(valid, -log_probs.gather(1, at).squeeze(1), 0.0)
        if buffer is None:
            continue
        d_logits = log_probs.exp_().scatter_add_(1, at, torch.full_like(at, -1, dtype=torch.float32))
        if weights is not None:
            d_logits.mul_(torch.where(valid, weights[start:stop].float(), 0.0).unsqueeze(1))
        elif not bool(valid.all()):
            d_logits.index_fill_(0, torch.nonzero(~valid).squeeze(1), 0.0)
        d = buffer[start - done:stop - done].copy_(d_logits)
        if d_hidden is not None:
            d_hidden[start:stop] = d @ w
        if stop == n or stop - done + rows > len(buffer):
            if d_weight is not None:
                d_weight += (buffer[:stop - done].t() @ hidden[done:stop].to(dtype)).float()
            if d_bias is not None:
                d_bias += buffer[:stop - done].float().sum(0)
            done = stop
    return losses, d_hidden, d_weight, d_bias


def projects_plainly(model: Any) -> bool:
    """Whether the model's logits are its output layer's plain projection (`x @ W.T + b`, no scaling or
    soft-capping after it): what `chunked=True` assumes. Checked on one tiny forward pass."""
    head = output_layer(model)
    if type(head) is not torch.nn.Linear:  # LoRA- or int8-wrapped layers compute something else
        return False
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[1, 2]], device=head.weight.device)).logits
    finally:
        hook.remove()
    return bool(torch.allclose(logits.float(), head(seen[0]).float(), rtol=1e-3, atol=1e-3))


def labelled_positions(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, targets), both (batch, most labels in a row): each row's labelled positions first,
    in order, then unlabelled ones (target -100) as padding."""
    keep = target != IGNORE
    width = int(keep.sum(1).max()) if keep.numel() else 0
    positions = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    return positions, target.gather(1, positions)


def _gather(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def output_layer(model: Any) -> torch.nn.Module:
    """The output layer, looking through DDP-style `.module` wrappers (peft forwards the lookup itself)."""
    while not hasattr(model, "get_output_embeddings") and hasattr(model, "module"):
        model = model.module
    return model.get_output_embeddings()
