"""Knowledge distillation as a task: classification whose loss also follows a teacher's soft labels.

Wraps `Classification` (composition, not a copy): reading data, encoding, metrics and reports are
the classification task's. This adds the teacher's logits to every feature — computed once, before
training, so the loop never runs the teacher — and the loss of Hinton et al. (2015):

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(hard labels)

T^2 keeps the soft term's gradients on the hard term's scale whatever the temperature. Texts
without labels (`distill.unlabelled`) get a placeholder label and weight 0 in the hard term.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.models.folder import Placed, architectures, load_placed, run_config
from lmforge.registry import register_task
from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Feature, Features
from lmforge.runtime.forward import run_forward
from lmforge.tasks.classification import Classification, Split
from lmforge.tasks.contracts import ClassifiesSequences, Data, Examples, Metrics, Model, Outputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.inference import Loaded

TINY = 1e-7  # probabilities are clipped here before turning back into logits


@register_task("distill")
def build(cfg: Config) -> "Distillation":
    return Distillation(cfg)


class Distillation:
    """Trains a student classifier from a teacher classifier's soft labels (`load_data` loads it)."""

    name = "distill"
    auto_class = Classification.auto_class
    config_groups = ("classification", "distill")

    def __init__(self, cfg: Config):
        self.cfg, self.d = cfg, cfg.distill
        self.base = Classification(cfg)
        self.teacher: Placed | None = None
        self.teacher_task = self.base  # replaced by the teacher's own task when it is loaded
        self.unlabelled: Split | None = None
        self._teacher_probs: dict[int, np.ndarray] = {}  # id(split) -> probabilities, one teacher pass per split

    @property
    def default_metric(self) -> str:
        return self.base.default_metric

    # ---- data and model -------------------------------------------------------------------
    def load_data(self) -> Data[Split]:
        """The classification data, checked against the teacher's label set; the teacher is loaded here."""
        if not self.d.teacher:
            raise LmforgeError("distill.teacher is empty: give the teacher's model folder (--teacher runs/x/best)")
        if not 0.0 <= self.d.alpha <= 1.0 or self.d.temperature <= 0:
            raise LmforgeError("distill.alpha must lie in [0, 1] and distill.temperature be positive")
        self._load_teacher()
        data = self.base.load_data()
        mine, theirs = self.base.label_names, self.teacher_task.label_names
        if sorted(mine) != sorted(theirs):
            raise LmforgeError(f"labels of {self.cfg.data.train} ({', '.join(mine)}) differ from the teacher's "
                               f"({', '.join(theirs)})")
        if mine != theirs and self.base.class_weights is not None:
            raise LmforgeError("classification.class_weights needs the teacher's labels in sorted order")
        self.base.label_names = list(theirs)  # the order of the teacher's outputs
        if self.d.unlabelled:
            self.unlabelled = self.base.read_texts(self.d.unlabelled)
        return data

    def _load_teacher(self) -> None:
        """The teacher folder as a sequence classifier of the same kind (single/multi-label) as the student."""
        folder = Path(self.d.teacher)
        teacher_cfg = run_config(folder)
        classifier = any(a.endswith("ForSequenceClassification") for a in architectures(folder))
        if not classifier or teacher_cfg.classification.multi_label != self.base.multi:
            raise LmforgeError(f"{self.d.teacher} is not a {'multi-label ' if self.base.multi else ''}classifier "
                               "like the student this config trains")
        self.teacher = load_placed(folder, Classification.auto_class, self.cfg.train.precision)
        self.teacher_task = Classification(teacher_cfg)
        self.teacher_task.bind(self.teacher.model, self.teacher.tokenizer)

    def read_split(self, path: str) -> Split:
        return self.base.read_split(path)

    def build_model(self, data: Data[Split]) -> tuple[Model, PreTrainedTokenizerBase]:
        from lmforge.models.student import build_student

        return build_student(self.cfg, self.base.label_names, data.train.texts)

    def bind(self, model: Model, tokenizer: PreTrainedTokenizerBase) -> None:
        self.base.bind(model, tokenizer)

    def teacher_probs(self, split: Split) -> np.ndarray:
        """The teacher's probabilities on a split (its own tokenizer, batched), computed once per split."""
        if id(split) not in self._teacher_probs:
            assert self.teacher is not None, "load_data loads the teacher"
            t = self.teacher
            features = self.teacher_task.encode(Split(split.source, split.texts, []), t.tokenizer)
            self._teacher_probs[id(split)] = run_forward(self.teacher_task, t.model, features, 64, t.device,
                                                         t.precision)["probs"]
        return self._teacher_probs[id(split)]

    def encode(self, split: Split, tokenizer: PreTrainedTokenizerBase) -> Features:
        """Classification features plus the teacher's logits and whether the hard label counts."""
        features = self.base.encode(split, tokenizer)
        logits = self._logits(self.teacher_probs(split))
        n_labels = len(self.base.label_names)
        for feature, row in zip(features, logits):
            feature["teacher"] = row
            feature["hard"] = np.float32("labels" in feature)
            if "labels" not in feature:  # ignored by cross-entropy; zeroed by `hard` for multi-label
                feature["labels"] = np.zeros(n_labels, np.float32) if self.base.multi else np.int64(-100)
        return features

    def _logits(self, probs: np.ndarray) -> np.ndarray:
        """Logits back from probabilities: log p for softmax (shift-invariant), log-odds for sigmoid."""
        p = np.clip(probs.astype(np.float64), TINY, 1 - TINY)
        return (np.log(p / (1 - p)) if self.base.multi else np.log(p)).astype(np.float32)

    # ---- loop hooks -------------------------------------------------------------------------
    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch:
        return self.base.collate(features, multiple)

    def count(self, feature: Feature) -> float:
        return 1

    def loss(self, model: Model, batch: Batch) -> torch.Tensor:
        return self.losses(model, batch).sum()

    def losses(self, model: Model, batch: Batch) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        hard = self.base.example_losses(logits, batch["labels"]) * batch["hard"]
        return self.d.alpha * self.soft_losses(logits, batch["teacher"]) + (1 - self.d.alpha) * hard

    def soft_losses(self, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """T^2 * KL(teacher_T || student_T) per example (mean over labels for multi-label)."""
        t = self.d.temperature
        student, target = logits / t, teacher.float() / t
        if self.base.multi:  # a two-class KL per label
            student = torch.stack([F.logsigmoid(-student), F.logsigmoid(student)], -1)
            target = torch.stack([F.logsigmoid(-target), F.logsigmoid(target)], -1)
            kl = F.kl_div(student, target, reduction="none", log_target=True).sum(-1).mean(-1)
        else:
            kl = F.kl_div(F.log_softmax(student, -1), F.log_softmax(target, -1), reduction="none",
                          log_target=True).sum(-1)
        return kl * t * t

    def forward(self, model: Model, batch: Batch) -> Outputs:
        """The classification outputs plus each example's soft-label loss."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        out = self.base.logit_outputs(logits, batch)
        out["kd"] = self.soft_losses(logits, batch["teacher"]).detach().cpu().numpy()
        return out

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        """Classification metrics, the soft-label loss and the share of decisions agreeing with the teacher."""
        scores = self.base.score(outputs, features)
        teacher = np.stack([f["teacher"] for f in features])
        teacher_probs = 1 / (1 + np.exp(-teacher)) if self.base.multi else np.exp(teacher)
        scores["kd"] = float(np.mean(outputs["kd"]))
        scores["agreement"] = agreement(self.base, outputs["probs"], teacher_probs)
        return scores

    # ---- results ----------------------------------------------------------------------------
    def report(self, loaded: Loaded, split: Split) -> tuple[Metrics, Examples]:
        return self.base.report(loaded, split)

    def baseline(self, train: Split, split: Split) -> tuple[Metrics, Examples]:
        return self.base.baseline(train, split)


def agreement(task: ClassifiesSequences[Split], probs: np.ndarray, reference: np.ndarray) -> float:
    """Share of decisions (labels, or per-label yes/no for multi-label) equal to the reference model's."""
    return float(np.mean(task.decide(probs) == task.decide(reference)))
