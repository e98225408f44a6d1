"""Pure metric functions on arrays: no model, no tokenizer, no files.

Everything returned is plain Python (float, int, list, dict) so a result can be written with
`json.dumps` and compared across runs without numpy in the way. scikit-learn does the counting;
this module only fixes the label set, the averaging choices and the output shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> float:
    """Weighted mean gap between confidence and observed accuracy over equal-width bins.

    Bins are (lo, hi] on [0, 1] (a confidence of exactly 0 falls in the first bin), following
    Guo et al. 2017, so numbers are comparable with published ECE values. `correct` is 0/1 (or
    bool): for a classifier it says whether the prediction was right; for a single probability it
    is the binary truth, which makes this the calibration of that probability.
    """
    conf = np.asarray(confidence, dtype=float).ravel()
    hit = np.asarray(correct, dtype=float).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"confidence has {conf.size} values but correct has {hit.size}")
    if conf.size == 0:
        return 0.0
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bin_ids = np.searchsorted(inner_edges, conf, side="left")
    conf_sums = np.bincount(bin_ids, weights=conf, minlength=n_bins)
    hit_sums = np.bincount(bin_ids, weights=hit, minlength=n_bins)
    # |sum(conf) - sum(hit)| / n per bin equals (count/n) * |mean conf - accuracy|, and empty
    # bins contribute zero without a division by zero.
    return float(np.abs(conf_sums - hit_sums).sum() / conf.size)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probs: np.ndarray | None,
    labels: list[str],
) -> dict:
    """Scores for single-label classification, where `labels[i]` names class id i.

    Macro/weighted averages follow scikit-learn's default and cover the classes seen in y_true
    or y_pred, so a class missing from a small eval set does not pull the macro score towards 0.
    `per_class` and `confusion_matrix` still list every class in `labels`, with support 0 where
    absent. ECE uses the top probability of each row against whether its argmax was right, so the
    confidence and the decision it is scored on always belong together; it is None without probs.
    """
    true = np.asarray(y_true, dtype=int)
    pred = np.asarray(y_pred, dtype=int)
    _check_class_ids(true, pred, len(labels))
    ids = list(range(len(labels)))
    ece = None
    if probs is not None:
        p = np.asarray(probs, dtype=float)
        if p.shape != (true.size, len(labels)):
            raise ValueError(f"probs is {p.shape}, expected ({true.size}, {len(labels)})")
        ece = expected_calibration_error(p.max(axis=1), p.argmax(axis=1) == true)
    return {
        "accuracy": float(accuracy_score(true, pred)),
        **_averaged_scores(true, pred),
        "per_class": _per_class(true, pred, labels),
        "confusion_matrix": {
            "labels": list(labels),
            "matrix": confusion_matrix(true, pred, labels=ids).tolist(),
        },
        "ece": ece,
        "n": int(true.size),
        "warnings": [w for w in [collapse_warning(true, pred, labels)] if w],
    }


def collapse_warning(true: np.ndarray, pred: np.ndarray, labels: list[str], share: float = 0.95) -> str | None:
    """A warning when more than `share` of the predictions are one class while the labels are not:
    the signature of a run that never left the majority class (too few steps, too high a rate),
    which a single accuracy number hides on imbalanced data."""
    if pred.size == 0:
        return None
    counts = np.bincount(pred, minlength=len(labels))
    top = int(counts.argmax())
    predicted = counts[top] / pred.size
    truth = float(np.bincount(true, minlength=len(labels)).max()) / true.size
    if predicted <= share or truth > share:
        return None
    return (f"COLLAPSED: the model predicts '{labels[top]}' for {predicted:.0%} of {pred.size} texts, while the "
            f"most frequent label covers only {truth:.0%} — it has not learned to tell the classes apart")


def multilabel_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None, labels: list[str]
) -> dict:
    """Scores for multi-label classification on (n, k) 0/1 indicator arrays.

    `accuracy` is subset accuracy (every label of an example right), the strict number people
    quote for multi-label tasks. `confusion_matrix["matrix"]` holds one 2x2 matrix per label,
    `[[tn, fp], [fn, tp]]`, because a k x k matrix has no meaning when an example has several
    true labels. ECE treats each (example, label) sigmoid probability as a forecast of the 0/1
    truth, so it measures whether "p = 0.8" means positive 80% of the time, independent of the
    threshold that produced y_pred.
    """
    true = np.asarray(y_true, dtype=int)
    pred = np.asarray(y_pred, dtype=int)
    if true.shape != pred.shape or true.ndim != 2 or true.shape[1] != len(labels):
        raise ValueError(
            f"y_true {true.shape} and y_pred {pred.shape} must both be (n, {len(labels)})"
        )
    ece = None
    if probs is not None:
        ece = expected_calibration_error(np.asarray(probs, dtype=float), true)
    return {
        "accuracy": float(accuracy_score(true, pred)),
        **_averaged_scores(true, pred),
        "per_class": _per_class(true, pred, labels),
        "confusion_matrix": {
            "labels": list(labels),
            "matrix": multilabel_confusion_matrix(true, pred).tolist(),
        },
        "ece": ece,
        "n": int(true.shape[0]),
    }


def _check_class_ids(true: np.ndarray, pred: np.ndarray, n_classes: int) -> None:
    """Reject ids outside the label list: scikit-learn would silently drop them from the matrix."""
    for name, ids in (("y_true", true), ("y_pred", pred)):
        bad = ids[(ids < 0) | (ids >= n_classes)]
        if bad.size:
            raise ValueError(f"{name} has class id {int(bad[0])}, but only {n_classes} labels")


def _averaged_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Macro precision/recall and the three F1 averages, as plain floats."""
    precision, recall, _, _ = precision_recall_fscore_support(
        true, pred, average="macro", zero_division=0
    )
    return {
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        **{
            f"f1_{avg}": float(f1_score(true, pred, average=avg, zero_division=0))
            for avg in ("macro", "micro", "weighted")
        },
    }


def _per_class(true: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[str, dict]:
    """Precision, recall, f1 and support for every named class, present in the data or not."""
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=list(range(len(labels))), zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }
