"""Words people read: sub-word attributions summed to words, through the tokenizer's character offsets.

Chinese has no spaces, so CJK runs are segmented with jieba; every other run is split on whitespace.
Mixed text ("这个room很好") is cut into runs first, so each part gets the segmenter that fits it.
Offsets, not token strings, carry tokens to words: they work the same for WordPiece ("##"), byte-level
BPE (a token may start with a space, or be a third of a character) and SentencePiece.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Sequence

# CJK ideographs plus CJK and full-width punctuation: jieba keeps "，" and "！" as words of their own.
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_RUNS = re.compile(f"([{_CJK}]+)|([^\\s{_CJK}]+)")


@dataclass(frozen=True)
class Span:
    """A piece of the text: characters [start, end)."""

    text: str
    start: int
    end: int


def split_words(text: str) -> list[Span]:
    """The words of `text` in order: jieba words inside CJK runs, whitespace-separated words elsewhere."""
    words: list[Span] = []
    for match in _RUNS.finditer(text):
        if match.group(1):
            words += [Span(w, match.start() + s, match.start() + e) for w, s, e in _jieba(match.group(1)) if w.strip()]
        else:
            words.append(Span(match.group(2), match.start(), match.end()))
    return words


def _jieba(run: str) -> list[tuple[str, int, int]]:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading on every first use
    return list(jieba.tokenize(run, HMM=False))


def word_scores(words: Sequence[Span], offsets: Sequence[tuple[int, int]], scores: Sequence[float]) -> list[float]:
    """Each word's summed token scores. A token spanning several words (a BPE merge across a jieba
    boundary) splits its score by the characters it shares with each, so no attribution is lost
    or counted twice; tokens with empty offsets (special tokens) count for nothing."""
    totals = [0.0] * len(words)
    starts = [w.start for w in words]
    for (start, end), score in zip(offsets, scores):
        if end <= start:
            continue
        shares = [(i, min(end, words[i].end) - max(start, words[i].start)) for i in _candidates(starts, start, end)]
        shares = [(i, n) for i, n in shares if n > 0]
        covered = sum(n for _, n in shares)
        for i, n in shares:
            totals[i] += score * n / covered
    return totals


def _candidates(starts: list[int], start: int, end: int) -> range:
    """Indexes of the words that may overlap [start, end): from the last word starting at or before
    `start` to the last starting before `end`."""
    return range(max(bisect_right(starts, start) - 1, 0), bisect_left(starts, end))
