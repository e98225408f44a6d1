"""The contracts between a task and the rest of lmforge — read this file to know what a task is.

Two protocols and a few capabilities:

- `Trainable` is all the loop (`lmforge.train.loop.fit`) knows of a task: it batches features,
  counts loss terms, takes the loss, and to evaluate runs `forward` and `score`.
- `Task` adds what building and using a model needs: reading and validating data, the model class,
  encoding, reports, and the task's non-neural baseline. Every registered task implements it.
- Capabilities are optional protocols a caller checks with `isinstance(task, Capability)` before
  relying on them (DP-SGD needs `PerExampleLosses`, `predict` needs `Predicts`, `generate` and `chat`
  need `Generates`, `compare`/`export-onnx`/`prune`/`distill` need `ClassifiesSequences`, `baseline`
  and the reports' baseline column need `Baselined`, `explain` needs `Explains`). No caller asks a
  task for its name to decide what it can do.

A task is generic in its split type `S` (the validated data of one file): callers never look
inside a split, they only hand it back to the task that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Iterator, Protocol, TypeAlias, TypeVar, runtime_checkable

import numpy as np
import torch

from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Feature, Features
from lmforge.runtime.forward import Outputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.inference import Loaded

Metrics = dict[str, Any]  # full metrics: floats plus nested tables (per class, confusion matrix)
Examples = list[dict[str, Any]]  # examples a report shows (worst errors, generated answers)
Model: TypeAlias = torch.nn.Module  # a transformers model (possibly peft- or accelerate-wrapped)
# A score `Trainable.score` may include: 1.0 while the model has not left a degenerate start (a
# classifier predicting one class for nearly every text). Early stopping does not count such an
# evaluation as one "without gain": the run has not started learning, it has not stopped.
COLLAPSED = "collapsed"

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)  # a capability that only makes splits
S_contra = TypeVar("S_contra", contravariant=True)  # a capability that only reads them


@dataclass
class Data(Generic[S]):
    """A task's validated splits; `test` is `validation` when no test file is given."""

    train: S
    validation: S
    test: S


class Trainable(Protocol):
    """What the one training loop needs from a task."""

    name: str

    @property
    def default_metric(self) -> str:
        """Metric that picks the best checkpoint unless train.metric says otherwise."""

    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch:
        """A padded batch of features, its sequences' width rounded up to `multiple` (see `pad_collate`)."""

    def count(self, feature: Feature) -> float:
        """Loss terms this example adds (1 per example, or its number of target tokens).

        The loop divides the summed loss by the count over the whole global batch, so gradient
        accumulation and several processes give exactly the full-batch mean.
        """

    def loss(self, model: Model, batch: Batch) -> torch.Tensor:
        """Loss summed over the batch's loss terms."""

    def forward(self, model: Model, batch: Batch) -> Outputs:
        """Per-example outputs needed to score and to predict."""

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        """Scalar metrics from outputs, used for best-checkpoint choice and logs (and `COLLAPSED`)."""


class Task(Trainable, Protocol[S]):
    """What building, training and using a model of this task needs."""

    auto_class: str  # the transformers Auto* class that loads this task's model folders
    config_groups: tuple[str, ...]  # task-specific config groups it reads (others must stay at defaults)

    def load_data(self) -> Data[S]:
        """Read and validate every configured split; raise DataError before anything is written."""

    def build_model(self, data: Data[S]) -> tuple[Model, PreTrainedTokenizerBase]:
        """(model, tokenizer) for this task, from a pretrained checkpoint or a preset."""

    def bind(self, model: Model, tokenizer: PreTrainedTokenizerBase) -> None:
        """Attach to a built or loaded model (label names, pad id, ...) before encoding or training."""

    def encode(self, split: S, tokenizer: PreTrainedTokenizerBase) -> Features:
        """Encoded features of one split, in the split's order."""

    def read_split(self, path: str) -> S:
        """A labelled file (evaluation data), validated against the bound model."""

    def report(self, loaded: Loaded, split: S) -> tuple[Metrics, Examples]:
        """Full metrics of a loaded model on a split, and examples to show."""


# ---- capabilities ---------------------------------------------------------------------------------
@runtime_checkable
class PerExampleLosses(Protocol):
    """Each example's summed loss, shape (n,): DP-SGD clips per example, so it must know which loss
    terms belong to which example."""

    def losses(self, model: Model, batch: Batch) -> torch.Tensor: ...


@runtime_checkable
class Baselined(Protocol[S_contra]):
    """A non-neural reference the model must beat (`lmforge baseline`, the baseline column of every
    report), fitted on the training split and scored like `report`."""

    def baseline(self, train: S_contra, split: S_contra) -> tuple[Metrics, Examples]: ...


@runtime_checkable
class CountsFlops(Protocol):
    """Training FLOPs per input token, for MFU in the logs."""

    def flops_per_token(self, model: Model) -> float: ...


@runtime_checkable
class Predicts(Protocol[S_co]):
    """Texts in, one record per text out (`lmforge predict`, `lmforge.load(p).predict`, the server)."""

    def read_texts(self, path: str) -> S_co:
        """An unlabelled (or labelled) file: only the text column is required."""

    def text_split(self, texts: list[str]) -> S_co:
        """Texts given directly (the Python API, the server) as an unlabelled split."""

    def predictions(self, outputs: Outputs) -> list[dict[str, Any]]:
        """One JSON-ready record per example, in order."""

    def parts(self, split: Any, size: int) -> Iterator[Any]:
        """`split` (one of this task's) as consecutive splits of at most `size` examples, in order:
        `predict` encodes, runs and writes one part at a time, so its memory does not grow with the input."""


@runtime_checkable
class TagsSpans(Protocol):
    """A token tagger whose predictions are typed character spans of each input text (`POST /v1/ner`):
    `predictions` gives {"entities": [{"start", "end", "label", "score"}]} per text."""

    entity_types: list[str]


Conversation = list[dict[str, str]]  # {"role": ..., "content": ...} messages, system first if any


@runtime_checkable
class Generates(Protocol[S_co]):
    """Answers prompts with a causal LM (`generate`, `chat`, `kb ask --generate-with`, chat completions)."""

    def conversations(self, questions: list[str]) -> list[Conversation]:
        """Single-turn conversations asking `questions`, with the configured system prompt."""

    def read_prompts(self, path: str) -> list[Conversation]:
        """Conversations to answer from a file: Q&A pairs or conversations (references dropped), or
        bare questions."""

    def conversation_split(self, conversations: list[Conversation]) -> S_co:
        """Complete conversations as a split, to score the likelihood of their last answers."""


@runtime_checkable
class ClassifiesSequences(Protocol[S_contra]):
    """A sequence classifier with class probabilities (`compare`, `export-onnx`, `prune`, `distill`)."""

    label_names: list[str]
    multi: bool

    def texts(self, split: S_contra) -> list[str]:
        """The texts of a split, in order."""

    def targets(self, split: S_contra) -> np.ndarray:
        """Class ids (n,) or a multi-hot matrix (n, k)."""

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Predicted class ids (n,), or a multi-hot matrix (n, k) for multi-label."""

    def metrics(self, outputs: Outputs, truth: np.ndarray) -> Metrics:
        """The full metrics dict of class probabilities against `truth`."""


@runtime_checkable
class Explains(Protocol):
    """A classifier whose class probabilities are a function of its input tokens that attribution
    methods can differentiate and perturb (`lmforge explain`, `Loaded.explain`, /v1/explain, the
    highlighted errors of a report)."""

    label_names: list[str]
    multi: bool

    def probabilities(self, model: Model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, k) with their autograd graph: softmax, or one sigmoid per label."""

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Predicted class ids (n,), or a multi-hot matrix (n, k) for multi-label."""
