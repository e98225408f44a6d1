"""Linear layers whose weights are packed once, at load, into the layout of the CPU's oneDNN kernels.

Why: on a CPU, `F.linear` hands oneDNN a plain (out, in) weight, which it reorders into its blocked
layout on every call. For the few rows of a decoding step the reorder costs as much as the product
(measured, 1 core, bf16: a 576 -> 1536 projection at 1 row 248 us plain vs 128 us packed, at 8 rows
435 vs 278 us; at 1,600 rows 1.1x). Inference never changes a weight, so the reorder can be done once.
The packed kernel computes the same product; results agree with `F.linear` to rounding (bit for bit
in bf16 on one thread; several threads or fp32's other sgemm may sum in another order), so greedy
answers in bf16 can part from unpacked ones where two tokens were nearly tied, as batching does.
Measured (bench/generate_vs_hf.py, SmolLM2-135M, bf16, 2 cores): `generate` 1.16-1.19x at batch 1 and 8.

The original weight stays the layer's parameter (state dicts, saving, tied embeddings and anything
that reads `.weight` see no difference); the packed copy is an extra copy of it. Whenever the packed
path would not be the same computation — gradients wanted (integrated-gradients explanations),
`torch.compile` tracing (inductor does its own packing), another dtype or device — the layer runs
`F.linear` on the original; a weight changed in place is repacked before its next use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ROWS_HINT = 8  # oneDNN picks the packed layout for this many rows; any number of rows works with it


def available() -> bool:
    """Whether this torch build has the oneDNN (mkldnn) CPU kernels packing needs."""
    return torch.backends.mkldnn.is_available()


class PackedLinear(torch.nn.Module):
    """A `torch.nn.Linear` (same parameters, same names) that multiplies by a pre-packed weight."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self._pack()

    def _pack(self) -> None:
        self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), ROWS_HINT)
        self._packed_from = (self.weight._version, self.weight.data_ptr(), self.weight.dtype)

    def _packed_path(self, x: torch.Tensor) -> bool:
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        return not (wants_grad or torch.compiler.is_compiling() or x.device.type != "cpu"
                    or x.dtype != self.weight.dtype or self.weight.device.type != "cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._packed_path(x):
            return F.linear(x, self.weight, self.bias)
        if self._packed_from != (self.weight._version, self.weight.data_ptr(), self.weight.dtype):
            self._pack()
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self._packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, packed"


def pack_linears(model: torch.nn.Module) -> int:
    """Replace every plain `torch.nn.Linear` of a CPU float model by a `PackedLinear`; the number replaced.
    Subclasses (quantized, LoRA, ...) are left alone: their forward is not a plain product."""
    if not available():
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and child.weight.device.type == "cpu" and child.weight.is_floating_point():
                setattr(parent, name, PackedLinear(child))
                replaced += 1
    return replaced
