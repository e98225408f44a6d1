"""The TF-IDF + logistic regression baseline every neural classifier is compared with."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def tfidf_probs(train_texts: Sequence[str], targets: np.ndarray, texts: Sequence[str], seed: int) -> np.ndarray:
    """Class probabilities (n, k) from char 1-3-gram TF-IDF + logistic regression.

    Character n-grams read Chinese without a word segmenter. `targets` is a vector of class ids
    (softmax-style probabilities out) or a multi-hot matrix (one binary classifier per label).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(train_texts)
    if targets.ndim == 2:
        model = OneVsRestClassifier(LogisticRegression(max_iter=1000, random_state=seed)).fit(features, targets)
        return model.predict_proba(vectorizer.transform(texts)).astype(np.float32)
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(features, targets)
    probs = np.zeros((len(texts), int(targets.max()) + 1), dtype=np.float32)
    probs[:, model.classes_] = model.predict_proba(vectorizer.transform(texts))
    return probs
