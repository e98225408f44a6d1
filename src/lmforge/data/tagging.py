"""Token tags and character spans: splitting text into words, BIO/BIOES tags <-> entity spans.

Pure functions, no model and no files. A sentence is a list of words with character offsets into
its text; an entity is a half-open word range (or character range) with a type. Every format the
`ner` task reads (CoNLL, tokens + tags, text + character-offset entities) becomes words + tags
through here, and model outputs become character spans through here, so training, evaluation,
prediction and the server agree on what an entity is.

Chinese text is read one character per word (no segmenter: a segmenter's errors would become
entity-boundary errors); runs of other letters or digits form one word; every other non-space
character (punctuation) is a word of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEMES = ("bio", "bioes")
OUTSIDE = "O"
_TAG = re.compile(r"^(?:O|([BIES])-(\S.*))$")

# Han ideographs (with extension A and compatibility forms), kana, hangul and full-width punctuation:
# each is one word. Everything else that is a letter/digit run forms one word.
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff01-\uff0f\uff1a-\uff20"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Span:
    """An entity: [start, end) in words or in characters, and its type."""

    start: int
    end: int
    label: str


def split_words(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the words of `text` (see the module docstring)."""
    return [m.span() for m in _WORD.finditer(text)]


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """A text for pre-split words, and each word's offsets in it.

    Words are joined with a space, except between two CJK characters (Chinese is written without
    spaces, and a model must see the text as a user would type it)."""
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    at = 0
    for i, word in enumerate(words):
        if i and not (_is_cjk(words[i - 1][-1:]) and _is_cjk(word[:1])):
            parts.append(" ")
            at += 1
        parts.append(word)
        offsets.append((at, at + len(word)))
        at += len(word)
    return "".join(parts), offsets


def _is_cjk(char: str) -> bool:
    return bool(char) and re.match(f"[{_CJK}]", char) is not None


def parse_tag(tag: str) -> tuple[str, str] | None:
    """(prefix, type) of a tag ("O" gives ("O", "")), or None when it is not a BIO/BIOES tag."""
    match = _TAG.match(tag)
    if match is None:
        return None
    return (match.group(1), match.group(2)) if match.group(1) else (OUTSIDE, "")


def tags_to_spans(tags: list[str]) -> tuple[list[Span], list[int]]:
    """Entities (word ranges) in BIO or BIOES tags, and the positions that had to be repaired.

    Read as conlleval and seqeval's default mode read them: an I- (or E-) that does not continue an
    entity of its type starts a new one. Such a position is "repaired" (the tag would be B- or S-
    in a clean file); IOB1 files (CoNLL-2003 as released) consist of them. Unknown tags raise
    ValueError; callers validate tags with `parse_tag` first.
    """
    spans: list[Span] = []
    repaired: list[int] = []
    start, kind = -1, ""

    def close(end: int) -> None:
        nonlocal start, kind
        if start >= 0:
            spans.append(Span(start, end, kind))
        start, kind = -1, ""

    for i, tag in enumerate(tags):
        parsed = parse_tag(tag)
        if parsed is None:
            raise ValueError(f"not a BIO/BIOES tag: {tag!r}")
        prefix, label = parsed
        continues = start >= 0 and label == kind and prefix in ("I", "E")
        if not continues:
            close(i)
            if prefix in ("I", "E"):
                repaired.append(i)
            if prefix != OUTSIDE:
                start, kind = i, label
        if prefix in ("E", "S"):
            close(i + 1)
    close(len(tags))
    return spans, repaired


def spans_to_tags(spans: list[Span], n: int, scheme: str) -> list[str]:
    """Tags of `n` words with `spans` (word ranges, not overlapping) in the BIO or BIOES scheme."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    tags = [OUTSIDE] * n
    for span in spans:
        width = span.end - span.start
        if scheme == "bioes" and width == 1:
            tags[span.start] = f"S-{span.label}"
            continue
        tags[span.start] = f"B-{span.label}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label}"
        if scheme == "bioes":
            tags[span.end - 1] = f"E-{span.label}"
    return tags


def label_set(types: list[str], scheme: str) -> list[str]:
    """Every tag of `scheme` over entity `types`: "O" first (id 0), then per type in sorted order."""
    prefixes = "BI" if scheme == "bio" else "BIES"
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(types) for p in prefixes]


def char_to_word_spans(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The word range whose characters are exactly [start, end), or None when a boundary falls
    inside a word (or the range holds no word)."""
    first = next((i for i, (s, _) in enumerate(offsets) if s == start), None)
    last = next((i for i, (_, e) in enumerate(offsets) if e == end), None)
    if first is None or last is None or last < first:
        return None
    return first, last + 1
