"""Text checks point at rows; counts and splits behave as documented."""

from __future__ import annotations

from collections import Counter

import pytest

from lmforge.data.readers import Row
from lmforge.data.validate import check_text, duplicate_count, overlap_count, stratified_split
from lmforge.errors import LmforgeError, Problem


def test_check_text_accepts_good_rows() -> None:
    assert check_text([Row("d.csv:2", {"text": "fine", "label": "a"})], "text") == []


def test_check_text_reports_each_bad_row() -> None:
    rows = [
        Row("d.jsonl:1", {"text": "fine"}),
        Row("d.jsonl:2", {"text": "   "}),
        Row("d.jsonl:3", {"text": 42}),
        Row("d.jsonl:4", {"text": None}),
        Row("d.jsonl:5", {"body": "x", "label": "a"}),
    ]
    assert check_text(rows, "text") == [
        Problem("d.jsonl:2", "text", "empty text"),
        Problem("d.jsonl:3", "text", "expected a string, got int"),
        Problem("d.jsonl:4", "text", "expected a string, got null"),
        Problem("d.jsonl:5", "text", "missing column 'text' (columns found: body, label)"),
    ]


def test_check_text_column_missing_everywhere_is_one_problem() -> None:
    rows = [Row(f"data/d.csv:{i}", {"a": "x", "b": "y"}) for i in range(2, 50)]
    assert check_text(rows, "text") == [
        Problem("data/d.csv", "text", "no row has column 'text' (columns found: a, b)")
    ]


def test_duplicate_count_ignores_surrounding_whitespace() -> None:
    assert duplicate_count(["a", "b", " a ", "a", "c"]) == 2
    assert duplicate_count([]) == 0


def test_overlap_count_counts_rows_of_b_seen_in_a() -> None:
    assert overlap_count(["a", "b"], ["b ", "c", "a", "b"]) == 3


LABELS = ["pos"] * 60 + ["neg"] * 30 + ["neu"] * 10


def test_stratified_split_keeps_class_proportions() -> None:
    train, validation = stratified_split(LABELS, 0.2, seed=0)
    assert sorted(train + validation) == list(range(len(LABELS)))
    assert train == sorted(train) and validation == sorted(validation)
    assert Counter(LABELS[i] for i in validation) == {"pos": 12, "neg": 6, "neu": 2}


def test_stratified_split_is_deterministic_per_seed() -> None:
    assert stratified_split(LABELS, 0.2, seed=1) == stratified_split(LABELS, 0.2, seed=1)
    assert stratified_split(LABELS, 0.2, seed=1) != stratified_split(LABELS, 0.2, seed=2)


def test_stratified_split_keeps_singletons_in_train() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + ["rare"]
    train, validation = stratified_split(labels, 0.2, seed=0)
    assert 20 in train
    assert Counter(labels[i] for i in validation) == {"a": 2, "b": 2}


def test_stratified_split_too_small_to_stratify_still_splits() -> None:
    labels = ["a", "a", "b", "b", "c", "c", 1, 1]  # 4 classes, mixed label types
    train, validation = stratified_split(labels, 0.2, seed=0)
    assert len(validation) == 2 and len(train) == 6


def test_stratified_split_rejects_bad_fractions() -> None:
    with pytest.raises(LmforgeError, match="between 0 and 1"):
        stratified_split(LABELS, 1.0, seed=0)
    with pytest.raises(LmforgeError, match="no rows to train on"):
        stratified_split(["a", "a"], 0.9, seed=0)


def test_max_length_counts_the_positions_a_padding_row_takes():
    """RoBERTa-style position tables start after their padding row: 34 rows with padding_idx 1 hold 32."""
    import dataclasses

    from transformers import RobertaConfig, RobertaForSequenceClassification

    from lmforge.config import Config
    from lmforge.errors import LmforgeError
    from lmforge.run import check_max_length

    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=34, pad_token_id=1))
    cfg = Config()
    check_max_length(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_length=32)), model)
    with pytest.raises(LmforgeError, match="above the 32 positions"):
        check_max_length(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_length=33)), model)
