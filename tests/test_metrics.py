"""Metric functions checked against scikit-learn directly and against hand-computed ECE."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from lmforge.evaluate.metrics import (
    classification_metrics,
    expected_calibration_error,
    multilabel_metrics,
)

LABELS = ["负面", "中性", "positive", "never-seen"]
Y_TRUE = [0, 1, 2, 2, 1, 0, 2, 1]
Y_PRED = [0, 2, 2, 1, 1, 0, 2, 0]
PROBS = np.array([
    [0.7, 0.2, 0.1, 0.0], [0.1, 0.3, 0.6, 0.0], [0.1, 0.1, 0.8, 0.0], [0.2, 0.5, 0.3, 0.0],
    [0.1, 0.8, 0.1, 0.0], [0.9, 0.05, 0.05, 0.0], [0.0, 0.1, 0.9, 0.0], [0.5, 0.4, 0.1, 0.0],
])


@pytest.fixture(scope="module")
def single() -> dict:
    return classification_metrics(Y_TRUE, Y_PRED, PROBS, LABELS)


def test_single_label_matches_sklearn(single: dict) -> None:
    assert set(single) == {
        "accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro", "f1_weighted",
        "per_class", "confusion_matrix", "ece", "n", "warnings",
    }
    kw = {"zero_division": 0}
    assert single["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert single["precision_macro"] == pytest.approx(
        precision_score(Y_TRUE, Y_PRED, average="macro", **kw))
    assert single["recall_macro"] == pytest.approx(
        recall_score(Y_TRUE, Y_PRED, average="macro", **kw))
    for avg in ("macro", "micro", "weighted"):
        assert single[f"f1_{avg}"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average=avg, **kw))
    assert single["confusion_matrix"] == {
        "labels": LABELS,
        "matrix": confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1, 2, 3]).tolist(),
    }
    assert single["n"] == 8


def test_per_class_matches_sklearn_and_lists_absent_labels(single: dict) -> None:
    p, r, f, s = precision_recall_fscore_support(
        Y_TRUE, Y_PRED, labels=[0, 1, 2, 3], zero_division=0)
    assert list(single["per_class"]) == LABELS
    for i, name in enumerate(LABELS):
        row = single["per_class"][name]
        expected = {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        assert row == pytest.approx(expected)
    assert single["per_class"]["never-seen"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_single_label_ece_uses_argmax_confidence(single: dict) -> None:
    conf = PROBS.max(axis=1)
    correct = PROBS.argmax(axis=1) == np.array(Y_TRUE)
    assert single["ece"] == pytest.approx(expected_calibration_error(conf, correct))
    assert classification_metrics(Y_TRUE, Y_PRED, None, LABELS)["ece"] is None


def test_result_is_plain_json(single: dict) -> None:
    assert json.loads(json.dumps(single, ensure_ascii=False)) == single


def test_rejects_class_id_outside_labels() -> None:
    with pytest.raises(ValueError, match="class id 4"):
        classification_metrics([0, 1], [0, 4], None, LABELS)


def test_ece_hand_computed() -> None:
    # Always fully confident, right half the time: the gap is 1.0 - 0.5.
    assert expected_calibration_error(np.ones(10), np.array([1, 0] * 5)) == pytest.approx(0.5)
    # 0.8 confident and right 4 times in 5, 0.6 and right 3 times in 5: perfectly calibrated.
    conf = np.array([0.8] * 5 + [0.6] * 5)
    correct = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
    # Two bins, each 0.1 over-confident, weighted equally.
    conf = np.array([0.9, 0.9, 0.3, 0.3])
    assert expected_calibration_error(conf, np.array([1, 1, 0, 1]), n_bins=2) == pytest.approx(
        0.5 * abs(0.9 - 1.0) + 0.5 * abs(0.3 - 0.5))
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


ML_TRUE = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
ML_PRED = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
ML_PROBS = np.array([[0.9, 0.1, 0.8], [0.2, 0.7, 0.6], [0.8, 0.4, 0.1], [0.1, 0.2, 0.9]])
ML_LABELS = ["体育", "财经", "tech"]


def test_multilabel_matches_sklearn() -> None:
    m = multilabel_metrics(ML_TRUE, ML_PRED, ML_PROBS, ML_LABELS)
    assert m["accuracy"] == pytest.approx(0.5)  # subset accuracy: rows 0 and 3 fully right
    assert m["accuracy"] == pytest.approx(accuracy_score(ML_TRUE, ML_PRED))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(
            f1_score(ML_TRUE, ML_PRED, average=avg, zero_division=0))
    assert m["precision_macro"] == pytest.approx(
        precision_score(ML_TRUE, ML_PRED, average="macro", zero_division=0))
    expected_cm = multilabel_confusion_matrix(ML_TRUE, ML_PRED).tolist()
    assert m["confusion_matrix"]["matrix"] == expected_cm
    assert m["per_class"]["财经"]["support"] == 2
    assert m["ece"] == pytest.approx(expected_calibration_error(ML_PROBS.ravel(), ML_TRUE.ravel()))
    assert m["n"] == 4
    assert json.loads(json.dumps(m)) == m
    assert multilabel_metrics(ML_TRUE, ML_PRED, None, ML_LABELS)["ece"] is None
