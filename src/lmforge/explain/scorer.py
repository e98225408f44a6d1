"""The model side of an explanation: texts encoded with offsets, and target probabilities of token sequences.

Deleting a token (occlusion, Shapley sampling, the faithfulness variants) means dropping it from the
sequence, as ERASER and ferret do, not replacing it by [MASK] or [PAD], which the model may read as
a token of its own. A perturbed row marks deleted positions with DELETED; `compact` closes the gaps.
Special tokens ([CLS], [SEP], <s>) are never deleted and never attributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from lmforge.errors import LmforgeError
from lmforge.models.int8 import has_dynamic_int8
from lmforge.runtime.device import autocast
from lmforge.runtime.forward import inference_order
from lmforge.tasks.contracts import Explains, Model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DELETED = -1  # id of a deleted position in a perturbed row (and of padding, which is never there)


@dataclass(frozen=True)
class Encoded:
    """One text as the model reads it: ids, each token's character span, which tokens are special."""

    text: str
    ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[bool]

    @property
    def content(self) -> np.ndarray:
        """Positions of the tokens that come from the text (the only ones attributed or deleted)."""
        return np.flatnonzero(~np.asarray(self.special, dtype=bool))


@dataclass
class Scorer:
    """A sequence classifier ready to be explained: its model, tokenizer and task, on a device."""

    model: Model
    tokenizer: PreTrainedTokenizerBase
    task: Explains
    device: torch.device
    precision: str
    max_length: int
    batch_size: int = 64

    @property
    def differentiable(self) -> bool:
        """False for int8-dynamic models: their int8 kernels have no gradients (torch backpropagates
        nothing through them, silently), so only perturbation methods explain them."""
        return not has_dynamic_int8(self.model)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        if not self.tokenizer.is_fast:
            raise LmforgeError("explanations need a fast tokenizer (character offsets of every token)")
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, return_offsets_mapping=True,
                             return_special_tokens_mask=True)
        return [Encoded(t, ids, [tuple(o) for o in offsets], [bool(s) for s in special])
                for t, ids, offsets, special in zip(texts, enc["input_ids"], enc["offset_mapping"],
                                                    enc["special_tokens_mask"])]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, k) with gradients, in the loaded precision."""
        with autocast(self.precision, self.device, self.model):
            return self.task.probabilities(self.model, input_ids, attention_mask).float()

    def forward_deleted(self, rows: torch.Tensor) -> torch.Tensor:
        """Class probabilities of rows whose DELETED positions are dropped (perturbation methods)."""
        return self.forward(*self.compact(rows))

    def compact(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of `rows` with DELETED positions removed, right-padded."""
        keep = rows != DELETED
        width = max(int(keep.sum(1).max()), 1)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long, device=rows.device)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            kept = row[keep[i]]
            ids[i, : len(kept)], mask[i, : len(kept)] = kept, 1
        return ids, mask

    @torch.no_grad()
    def probs(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Class probabilities (n, k) of token sequences, in batches sorted by length."""
        self.model.eval()
        parts: list[tuple[list[int], np.ndarray]] = []
        for batch in inference_order([len(s) for s in sequences], self.batch_size):
            rows = torch.full((len(batch), max(len(sequences[i]) for i in batch)), DELETED, dtype=torch.long)
            for r, i in enumerate(batch):
                rows[r, : len(sequences[i])] = torch.as_tensor(list(sequences[i]), dtype=torch.long)
            parts.append((batch, self.forward_deleted(rows.to(self.device)).cpu().numpy()))
        result = np.zeros((len(sequences), parts[0][1].shape[1]) if parts else (0, 0))
        for batch, probs in parts:
            result[batch] = probs
        return result

    def target_probs(self, sequences: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
        """Probability of `targets[i]` for each token sequence."""
        return self.probs(sequences)[np.arange(len(sequences)), list(targets)] if len(sequences) else np.zeros(0)
