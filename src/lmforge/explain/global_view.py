"""What a classifier learned, per class: the words with the largest mean attribution over a dataset.

Set beside the TF-IDF baseline's strongest n-grams (`evaluate.baseline.tfidf_top_terms`): where the
two agree the model learned what a bag of characters already knows; where they differ it either
earns its keep (context, negation) or learned a shortcut (a product name, a punctuation habit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from lmforge.explain.explainer import Explanation

MIN_COUNT = 3  # a word must drive this many predictions of a class to be listed: one-off words are noise


@dataclass
class ClassView:
    """One class: how many texts the model gave it, its top words, and the baseline's top n-grams."""

    label: str
    texts: int
    words: list[tuple[str, float, int]]  # (word, mean attribution, occurrences)
    baseline: list[tuple[str, float]] = field(default_factory=list)  # (n-gram, coefficient)

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict (global.json)."""
        return {"label": self.label, "texts": self.texts,
                "words": [{"word": w, "mean_score": round(m, 6), "count": n} for w, m, n in self.words],
                "baseline": [{"ngram": g, "coefficient": c} for g, c in self.baseline]}


def class_words(explanations: Sequence[Explanation], labels: Sequence[str], top: int = 15,
                min_count: int = MIN_COUNT) -> list[ClassView]:
    """Per label, in `labels` order, the `top` words by mean attribution towards it, over the texts
    predicted as that label (English words lowercased, so "Great" and "great" count together)."""
    scores: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    texts = dict.fromkeys(labels, 0)
    for explanation in explanations:
        for target in explanation.targets:
            texts[target.label] += 1
            for w in target.words:
                scores[target.label].setdefault(w["word"].lower(), []).append(w["score"])
    views = []
    for label in labels:
        means = [(word, float(np.mean(s)), len(s)) for word, s in scores[label].items() if len(s) >= min_count]
        views.append(ClassView(label, texts[label], sorted(means, key=lambda m: -m[1])[:top]))
    return views
