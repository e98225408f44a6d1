"""The linear-chain CRF baseline every neural tagger is compared with (the classical bar of Chinese NER).

Features are the word (for Chinese: the character) and its neighbours two either side, neighbouring
bigrams, character classes and, for longer words, affixes: what CRF++ templates for Chinese NER
use. Fitted with L-BFGS and elastic-net regularisation (crfsuite), deterministic for given data.
"""

from __future__ import annotations

import unicodedata

WINDOW = 2


def crf_tags(train_words: list[list[str]], train_tags: list[list[str]], words: list[list[str]],
             max_iterations: int = 100) -> list[list[str]]:
    """Tags for `words` from a CRF fitted on (`train_words`, `train_tags`)."""
    import sklearn_crfsuite

    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=max_iterations,
                               all_possible_transitions=True)
    crf.fit([sentence_features(s) for s in train_words], train_tags)
    return [list(tags) for tags in crf.predict([sentence_features(s) for s in words])]


def sentence_features(words: list[str]) -> list[dict[str, str | bool]]:
    """One feature dict per word."""
    padded = ["<s>"] * WINDOW + words + ["</s>"] * WINDOW
    rows = []
    for i, word in enumerate(words):
        at = i + WINDOW
        row: dict[str, str | bool] = {"bias": True, "w": word, "lower": word.lower(), "kind": _kind(word),
                                         "title": word[:1].isupper()}
        for d in range(-WINDOW, WINDOW + 1):
            if d:
                row[f"w{d:+d}"] = padded[at + d]
        row["w-1w"], row["ww+1"] = padded[at - 1] + "|" + word, word + "|" + padded[at + 1]
        row["w-1w+1"] = padded[at - 1] + "|" + padded[at + 1]
        if len(word) > 2:
            row["prefix"], row["suffix"] = word[:3], word[-3:]
        rows.append(row)
    return rows


def _kind(word: str) -> str:
    """A coarse shape: digits, Han, capitalised or lower Latin, punctuation, mixed."""
    classes = {_char_class(c) for c in word}
    return classes.pop() if len(classes) == 1 else "mixed"


def _char_class(char: str) -> str:
    if char.isdigit():
        return "digit"
    if "CJK" in unicodedata.name(char, ""):
        return "han"
    if char.isalpha():
        return "upper" if char.isupper() else "lower"
    return "punct"
