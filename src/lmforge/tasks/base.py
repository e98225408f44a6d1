"""The contract between a task and the rest of lmforge.

The loop (`lmforge.train.loop.fit`) only batches features, calls `loss` and, to evaluate, `forward`
and `score`. Everything task-specific — reading and validating data, choosing the model head,
turning outputs into metrics and reports — stays behind these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

Features = list[dict[str, Any]]  # one dict per example; always has "input_ids"
Outputs = dict[str, np.ndarray]  # per-example arrays, first axis = example


@dataclass
class Data:
    """A task's validated splits; `test` is `validation` when no test file is given."""

    train: Any
    validation: Any
    test: Any


class Task(Protocol):
    name: str
    default_metric: str  # metric that picks the best checkpoint unless train.metric says otherwise

    def load_data(self) -> Any:
        """Read and validate every configured split; raise DataError before anything is written."""

    def build_model(self, data: Any) -> tuple[Any, Any]:
        """(model, tokenizer) for this task, from a pretrained checkpoint or a preset."""

    def bind(self, model: Any, tokenizer: Any) -> None:
        """Attach to a built or loaded model (label names, pad id, ...) before encoding or training."""

    def encode(self, split: Any, tokenizer: Any) -> Features:
        """Tokenised features of one split, in the split's order."""

    def collate(self, features: Features) -> dict[str, torch.Tensor]:
        """A padded batch of features."""

    def count(self, feature: dict[str, Any]) -> int:
        """Loss terms this example adds (1 per example, or its number of target tokens).

        The loop divides the summed loss by the count over the whole global batch, so gradient
        accumulation and several processes give exactly the full-batch mean.
        """

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss summed over the batch's loss terms."""

    # Optional: tasks that support DP-SGD also give each example's summed loss, shape (n,). DP-SGD
    # clips each example's gradient, so it must know which loss terms belong to which example.
    # def losses(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def forward(self, model: Any, batch: dict[str, torch.Tensor]) -> Outputs:
        """Per-example outputs needed to score and to predict."""

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        """Scalar metrics from outputs, used for best-checkpoint choice and logs."""

    def report(self, loaded: Any, split: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Full metrics of a loaded model (`lmforge.inference.Loaded`) on a split, and examples to show."""

    def baseline(self, train: Any, split: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The task's non-neural reference scored on `split`, in the same form as `report`."""
