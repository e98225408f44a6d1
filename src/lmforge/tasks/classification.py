"""Text classification: single-label (softmax) and multi-label (sigmoid + threshold)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.config import Config
from lmforge.data.readers import Row
from lmforge.data.source import read_data
from lmforge.data.validate import (
    check_column,
    check_text,
    duplicate_count,
    mixed_number_spellings,
    overlap_count,
    stratified_split,
)
from lmforge.errors import DataError, LmforgeError, Problem
from lmforge.log import logger
from lmforge.registry import register_task
from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Feature, Features, pad_collate
from lmforge.tasks.contracts import COLLAPSED, Data, Examples, Metrics, Model, Outputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.inference import Loaded

@dataclass
class Split:
    """Validated texts and their labels (class ids, or label-name lists for multi-label)."""

    source: str
    texts: list[str]
    labels: list[Any]
    locations: list[str] = field(default_factory=list)


@register_task("classification")
def build(cfg: Config) -> "Classification":
    return Classification(cfg)


class Classification:
    """The classification task; holds the label set once data or a saved model has fixed it."""

    name = "classification"
    auto_class = "AutoModelForSequenceClassification"
    config_groups = ("classification",)

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.multi = cfg.classification.multi_label
        self.label_names: list[str] = []
        self.class_weights: torch.Tensor | None = None
        self.pad_id = 0

    @property
    def default_metric(self) -> str:
        return "f1_micro" if self.multi else "f1_macro"

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> Data[Split]:
        """Read train/validation/test, check every row, and fix the label set from training data."""
        d = self.cfg.data
        if not d.train:
            raise LmforgeError("data.train is empty: give a training file")
        if d.text_column == d.label_column:
            raise LmforgeError(f"data.text_column and data.label_column are both '{d.text_column}': the model "
                               "would read the answer it has to predict")
        problems: list[Problem] = []
        train = self._read(d.train, problems)
        duplicates = duplicate_count(train.texts)  # counted before a validation share is held out
        self.label_names = sorted({name for labels in train.labels for name in self._names(labels)})
        if len(self.label_names) < 2 and not self.multi:
            problems.append(Problem(d.train, d.label_column, f"need at least 2 classes, found {self.label_names}"))
        for spellings in mixed_number_spellings(self.label_names):
            problems.append(Problem(d.train, d.label_column, f"labels {', '.join(map(repr, spellings))} are one number "
                                    "spelled differently and would become separate classes: write each label one way"))
        if d.validation:
            validation = self._read(d.validation, problems)
        else:
            train, validation = self._hold_out(train)
            if train.texts and (not validation.texts or len(train.texts) < len(self.label_names)):
                problems.append(Problem(d.train, "", f"{len(train.texts) + len(validation.texts)} rows are too few to "
                                        "hold out a validation share: give data.validation, or more rows"))
        test = self._read(d.test, problems) if d.test else validation
        for split in (validation, test):
            problems += self._unseen_labels(split)
        if problems:
            raise DataError(problems)
        if duplicates:
            logger.warning(f"{duplicates} duplicate texts in {d.train}")
        self._warn_overlaps(train, validation, test)
        data = Data(train, validation, test)
        if self.cfg.classification.class_weights:
            self.class_weights = self._class_weights(train)
        return data

    def read_split(self, path: str) -> Split:
        """A labelled evaluation file, validated against this model's label set."""
        problems: list[Problem] = []
        split = self._read(path, problems)
        problems += self._unseen_labels(split)
        if problems:
            raise DataError(problems)
        return split

    def read_texts(self, path: str) -> Split:
        """An unlabelled (or labelled) file for prediction: only the text column is required."""
        rows = read_data(path, self.cfg.data)
        problems = check_text(rows, self.cfg.data.text_column)
        if problems:
            raise DataError(problems)
        return Split(path, [r.values[self.cfg.data.text_column] for r in rows], [], [r.location for r in rows])

    def text_split(self, texts: list[str]) -> Split:
        """Texts given directly (the Python API, the server) as an unlabelled split."""
        return Split("<input>", list(texts), [], [f"<input>:{i}" for i in range(len(texts))])

    def parts(self, split: Split, size: int) -> Iterator[Split]:
        for start in range(0, len(split.texts), size):
            end = start + size
            yield Split(split.source, split.texts[start:end], split.labels[start:end], split.locations[start:end])

    def _read(self, path: str, problems: list[Problem]) -> Split:
        rows = read_data(path, self.cfg.data)
        found = check_text(rows, self.cfg.data.text_column)
        no_labels = check_column(rows, self.cfg.data.label_column)
        if no_labels is not None:
            problems += [*found, no_labels]
            return Split(path, [], [], [])
        bad = {p.location for p in found}
        problems += found
        texts, labels, locations = [], [], []
        for row in rows:
            label = self._parse_label(row, problems)
            text = row.values.get(self.cfg.data.text_column)
            if row.location in bad or label is None or not isinstance(text, str):
                continue
            texts.append(text)
            labels.append(label)
            locations.append(row.location)
        return Split(path, texts, labels, locations)

    def _parse_label(self, row: Row, problems: list[Problem]) -> str | list[str] | None:
        column = self.cfg.data.label_column
        value = row.values.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(Problem(row.location, column, "missing label"))
            return None
        if isinstance(value, float) and np.isinf(value):  # JSON's 1e400, a spreadsheet's overflow: no class
            problems.append(Problem(row.location, column, f"label {value} is not a finite number"))
            return None
        if not self.multi:
            if isinstance(value, (list, dict)):
                problems.append(Problem(row.location, column, f"expected one label, got {value!r}"))
                return None
            return str(value).strip()
        if isinstance(value, str):
            sep = self.cfg.classification.label_separator
            value = value.split(sep) if sep else [value]
        if not isinstance(value, list):
            value = [value]
        return sorted({str(v).strip() for v in value if str(v).strip()})

    def _names(self, labels: str | list[str]) -> list[str]:
        return list(labels) if isinstance(labels, list) else [labels]

    def _unseen_labels(self, split: Split) -> list[Problem]:
        known = set(self.label_names)
        return [
            Problem(loc, self.cfg.data.label_column, f"label '{name}' never appears in the training data "
                    f"(training labels: {', '.join(self.label_names)})")
            for loc, labels in zip(split.locations, split.labels)
            for name in self._names(labels)
            if name not in known
        ]

    def _hold_out(self, train: Split) -> tuple[Split, Split]:
        keys = [labels if not self.multi else "|".join(labels) for labels in train.labels]
        fraction = self.cfg.data.validation_fraction
        keep, held = stratified_split(keys, fraction, self.cfg.train.seed)
        logger.info(f"no data.validation: holding out {len(held)} of {len(keys)} training rows (stratified)")
        def pick(idx, name):
            return Split(name, [train.texts[i] for i in idx], [train.labels[i] for i in idx],
                                              [train.locations[i] for i in idx])
        return pick(keep, train.source), pick(held, f"{train.source} (held-out {fraction:.0%})")

    def _warn_overlaps(self, train: Split, validation: Split, test: Split) -> None:
        for split in {id(validation): validation, id(test): test}.values():
            shared = overlap_count(train.texts, split.texts)
            if shared:
                logger.warning(f"{shared} texts of {split.source} also occur in the training data "
                               "(scores on them overstate generalisation)")

    def _class_weights(self, train: Split) -> torch.Tensor:
        """Inverse-frequency weights (softmax) or negative/positive ratios (sigmoid's pos_weight)."""
        counts = self.targets(train).sum(0) if self.multi else np.bincount(self.targets(train),
                                                                           minlength=len(self.label_names))
        counts = np.maximum(counts, 1).astype(np.float64)
        if self.multi:
            return torch.tensor((len(train.labels) - counts) / counts, dtype=torch.float32)
        return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)

    def targets(self, split: Split) -> np.ndarray:
        """Class ids (n,) or a multi-hot matrix (n, k)."""
        index = {name: i for i, name in enumerate(self.label_names)}
        if not self.multi:
            return np.array([index[label] for label in split.labels], dtype=np.int64)
        hot: np.ndarray = np.zeros((len(split.labels), len(self.label_names)), dtype=np.float32)
        for row, labels in enumerate(split.labels):
            hot[row, [index[name] for name in labels]] = 1.0
        return hot

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, data: Data[Split]) -> tuple[Model, PreTrainedTokenizerBase]:
        from lmforge.models.classifier import build_classifier

        return build_classifier(self.cfg, self.label_names, data.train.texts)

    def encode(self, split: Split, tokenizer: PreTrainedTokenizerBase) -> Features:
        ids = tokenizer(split.texts, truncation=True, max_length=self.cfg.model.max_length)["input_ids"]
        if not split.labels:
            return [{"input_ids": row} for row in ids]
        targets = self.targets(split)
        return [{"input_ids": row, "labels": target} for row, target in zip(ids, targets)]

    def bind(self, model: Model, tokenizer: PreTrainedTokenizerBase) -> None:
        """Attach to a built or loaded model: its label names and the tokenizer's pad id."""
        from lmforge.models.classifier import label_names

        self.label_names = label_names(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ---- loop hooks -------------------------------------------------------------------------
    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch:
        return pad_collate(features, self.pad_id, multiple=multiple)

    def count(self, feature: Feature) -> float:
        return 1

    def loss(self, model: Model, batch: Batch) -> torch.Tensor:
        return self.losses(model, batch).sum()

    def losses(self, model: Model, batch: Batch) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        return self.example_losses(logits, batch["labels"])

    def forward(self, model: Model, batch: Batch) -> Outputs:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        return self.logit_outputs(logits, batch)

    def logit_outputs(self, logits: torch.Tensor, batch: Batch) -> Outputs:
        """Per-example outputs from a batch's logits (distillation adds its own to these)."""
        out = {"probs": self._probs(logits).detach().cpu().numpy()}
        if "labels" in batch:
            out["loss"] = self.example_losses(logits, batch["labels"]).detach().cpu().numpy()
        return out

    def probabilities(self, model: Model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, k) with gradients: what explanations attribute and perturb."""
        return self._probs(model(input_ids=input_ids, attention_mask=attention_mask).logits.float())

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multi else torch.softmax(logits, -1)

    def example_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example hard-label losses (n,); distillation adds its soft-label term to these."""
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if self.multi:
            losses = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight, reduction="none")
            return losses.mean(-1)
        return F.cross_entropy(logits, labels, weight=weight, reduction="none")

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        scored = self.metrics(outputs, np.stack([f["labels"] for f in features]))
        warnings = scored.get("warnings", [])
        for warning in warnings:
            logger.warning(f"validation: {warning}")
        return {k: v for k, v in scored.items() if isinstance(v, float)} | {COLLAPSED: float(bool(warnings))}

    # ---- results ----------------------------------------------------------------------------
    def metrics(self, outputs: Outputs, truth: np.ndarray) -> Metrics:
        """The full metrics dict (per class, confusion matrix, calibration) plus mean loss."""
        from lmforge.evaluate.metrics import classification_metrics, multilabel_metrics

        probs = outputs["probs"]
        if self.multi:
            result = multilabel_metrics(truth, self.decide(probs), probs, self.label_names)
        else:
            result = classification_metrics(truth, self.decide(probs), probs, self.label_names)
        if "loss" in outputs:
            result["loss"] = float(np.mean(outputs["loss"]))
        return result

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Predicted class ids (argmax) or a multi-hot matrix (probability above threshold)."""
        if self.multi:
            return (probs >= self.cfg.classification.threshold).astype(np.int64)
        return probs.argmax(-1)

    def predictions(self, outputs: Outputs) -> list[dict[str, Any]]:
        """One record per example: the label (or labels) and every class's probability."""
        probs = outputs["probs"]
        decided = self.decide(probs)
        records = []
        for row, pick in zip(probs, decided):
            label = [self.label_names[i] for i in np.flatnonzero(pick)] if self.multi else self.label_names[int(pick)]
            records.append({"label": label, "probs": {n: round(float(p), 6) for n, p in zip(self.label_names, row)}})
        return records

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """How sure each prediction is: top probability, or the mean certainty of each label decision."""
        return np.maximum(probs, 1 - probs).mean(-1) if self.multi else probs.max(-1)

    def texts(self, split: Split) -> list[str]:
        return split.texts

    def report(self, loaded: Loaded, split: Split) -> tuple[Metrics, Examples]:
        """Full metrics of a loaded model on `split`, and its most confident wrong predictions."""
        return self._report(loaded.outputs(split), split)

    def baseline(self, train: Split, split: Split) -> tuple[Metrics, Examples]:
        """Char 1-3-gram TF-IDF + logistic regression on `split`: the bar a model must clear."""
        from lmforge.evaluate.baseline import tfidf_probs

        probs = tfidf_probs(train.texts, self.targets(train), split.texts, self.cfg.train.seed)
        metrics, errors = self._report({"probs": probs}, split)
        return {"method": "TF-IDF + LR", **metrics}, errors

    def _report(self, outputs: Outputs, split: Split, limit: int = 50) -> tuple[Metrics, Examples]:
        """Full metrics, and the most confident wrong predictions (where a person learns most)."""
        confidence = self.confidence(outputs["probs"])
        wrong: Examples = [
            {"text": text, "label": str(truth), "pred": str(rec["label"]), "confidence": float(conf)}
            for text, truth, rec, conf in zip(split.texts, split.labels, self.predictions(outputs), confidence)
            if rec["label"] != truth
        ]
        return self.metrics(outputs, self.targets(split)), sorted(wrong, key=lambda e: -e["confidence"])[:limit]

