"""The TF-IDF + logistic regression baseline every neural classifier is compared with."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def tfidf_probs(train_texts: Sequence[str], targets: np.ndarray, texts: Sequence[str], seed: int) -> np.ndarray:
    """Class probabilities (n, k) from char 1-3-gram TF-IDF + logistic regression.

    Character n-grams read Chinese without a word segmenter. `targets` is a vector of class ids
    (softmax-style probabilities out) or a multi-hot matrix (one binary classifier per label).
    """
    vectorizer, model = _fit(train_texts, targets, seed)
    if targets.ndim == 2:
        return model.predict_proba(vectorizer.transform(texts)).astype(np.float32)
    probs = np.zeros((len(texts), int(targets.max()) + 1), dtype=np.float32)
    probs[:, model.classes_] = model.predict_proba(vectorizer.transform(texts))
    return probs


def tfidf_top_terms(train_texts: Sequence[str], targets: np.ndarray, seed: int,
                    k: int = 15) -> list[list[tuple[str, float]]]:
    """Per class (or label), the k n-grams whose coefficients push hardest towards it: what the
    baseline learned, to set beside the words a neural model relies on (`lmforge explain --global`)."""
    vectorizer, model = _fit(train_texts, targets, seed)
    terms = vectorizer.get_feature_names_out()
    weights = np.zeros((targets.shape[1] if targets.ndim == 2 else int(targets.max()) + 1, len(terms)))
    if targets.ndim == 2:
        for j, estimator in enumerate(model.estimators_):
            if hasattr(estimator, "coef_"):  # a label always (or never) present gets a constant predictor
                weights[j] = estimator.coef_[0]
    elif len(model.classes_) == 2:  # one coefficient row, for the second class; the first is its mirror
        weights[model.classes_] = np.stack([-model.coef_[0], model.coef_[0]])
    else:
        weights[model.classes_] = model.coef_
    return [[(str(terms[j]), round(float(w[j]), 4)) for j in np.argsort(-w)[:k]] for w in weights]


def classical_predictions(train_texts: Sequence[str], train_labels: Sequence[str],
                          texts: Sequence[str]) -> dict[str, tuple[list[str], float]]:
    """Predicted labels and fitting seconds of the two classical bars a fine-tuned model is shown
    next to (demo and bench/quality.py): the TF-IDF features with logistic regression and with a
    linear SVM (often the stronger of the two on short texts)."""
    import time

    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    results = {}
    for name, model in (("TF-IDF char 1-3 + logistic regression", LogisticRegression(max_iter=1000, random_state=0)),
                        ("TF-IDF char 1-3 + linear SVM", LinearSVC(random_state=0))):
        started = time.monotonic()
        vectorizer = _vectorizer()
        predicted = model.fit(vectorizer.fit_transform(train_texts), list(train_labels)).predict(vectorizer.transform(texts))
        results[name] = ([str(p) for p in predicted], time.monotonic() - started)
    return results


def _fit(train_texts: Sequence[str], targets: np.ndarray, seed: int) -> tuple[Any, Any]:
    """The fitted (vectorizer, classifier): one logistic regression per label for a multi-hot `targets`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    vectorizer = _vectorizer()
    features = vectorizer.fit_transform(train_texts)
    model: Any = LogisticRegression(max_iter=1000, random_state=seed)
    if targets.ndim == 2:
        model = OneVsRestClassifier(model)
    return vectorizer, model.fit(features, targets)


def nearest_answers(prompts: Sequence[str], answers: Sequence[str], queries: Sequence[str]) -> list[str]:
    """For each query, the answer of the most similar training prompt (cosine of char 1-3-gram TF-IDF;
    ties go to the earliest). A query sharing no n-gram with any prompt gets the first answer."""
    vectorizer = _vectorizer()
    known = vectorizer.fit_transform(prompts)
    best = (vectorizer.transform(queries) @ known.T).toarray().argmax(axis=1)  # rows are L2-normalised
    return [answers[i] for i in best]


def _vectorizer() -> Any:
    """Character 1-3-grams read Chinese without a word segmenter."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
