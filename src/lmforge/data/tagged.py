"""Rows of token-tagging data -> validated sentences (words with character offsets + entity spans).

Three row shapes are accepted, detected per row:

- CoNLL files (`.conll` ...; read by `data.readers` into {"tokens", "tags", "lines"} rows),
- JSON rows with `tokens` + `tags` (lists of equal length),
- JSON rows with a text (`data.text_column`) + `entities` [{"start", "end", "label"}] as character
  offsets, the shape annotation tools export; the text is split into words by
  `data.tagging.split_words` (Chinese: one character per word).

Every problem names file:line (for CoNLL, the token's own line): misaligned tokens/tags, unknown
tags, entities out of range, overlapping or cutting through a word. An I- (or E-) tag without a
B- is *repaired*, not refused: it starts an entity, as conlleval and seqeval read it (IOB1 files
such as CoNLL-2003 as released consist of these); the caller warns with the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from lmforge.data.readers import Row
from lmforge.data.tagging import Span, char_to_word_spans, join_words, parse_tag, split_words, tags_to_spans
from lmforge.errors import Problem

TOKENS, TAGS, ENTITIES = "tokens", "tags", "entities"


@dataclass
class Sentence:
    """One example: its text, its words' character offsets and (if labelled) its entities as word ranges."""

    text: str
    words: list[tuple[int, int]]
    spans: list[Span] | None
    location: str

    def char_spans(self, spans: list[Span]) -> list[Span]:
        """`spans` (word ranges of this sentence) as character ranges of its text."""
        return [Span(self.words[s.start][0], self.words[s.end - 1][1], s.label) for s in spans]


@dataclass
class Parsed:
    """Sentences of some rows, the problems found, and where I-/E- tags were repaired."""

    sentences: list[Sentence] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # locations


def parse_rows(rows: list[Row], text_column: str, labelled: bool) -> Parsed:
    """Sentences of `rows`; rows with problems are left out (the caller raises on any problem)."""
    parsed = Parsed()
    for row in rows:
        sentence = _parse(row, text_column, labelled, parsed)
        if sentence is not None:
            parsed.sentences.append(sentence)
    return parsed


def text_sentences(texts: list[str], source: str = "<input>") -> list[Sentence]:
    """Unlabelled sentences of raw texts (the Python API, the server)."""
    return [Sentence(t, split_words(t), None, f"{source}:{i}") for i, t in enumerate(texts)]


def _parse(row: Row, text_column: str, labelled: bool, parsed: Parsed) -> Sentence | None:
    values = row.values
    if TOKENS in values:
        return _from_tokens(row, labelled, parsed)
    if text_column in values:
        return _from_text(row, text_column, labelled, parsed)
    found = ", ".join(values) or "none"
    want = f"'{TOKENS}' + '{TAGS}', or '{text_column}' + '{ENTITIES}'" if labelled else f"'{text_column}' or '{TOKENS}'"
    parsed.problems.append(Problem(row.location, "", f"expected {want} (columns found: {found})"))
    return None


def _from_tokens(row: Row, labelled: bool, parsed: Parsed) -> Sentence | None:
    tokens = row.values[TOKENS]
    if not _strings(tokens) or not tokens:
        parsed.problems.append(Problem(row.location, TOKENS, "expected a non-empty list of non-empty strings"))
        return None
    text, words = join_words(tokens)
    if not labelled:
        return Sentence(text, words, None, row.location)
    tags = row.values.get(TAGS)
    if not _strings(tags):
        parsed.problems.append(Problem(row.location, TAGS, "expected a list of tags (strings) beside the tokens"))
        return None
    if len(tags) != len(tokens):
        parsed.problems.append(Problem(row.location, TAGS, f"{len(tokens)} tokens but {len(tags)} tags"))
        return None
    lines = row.values.get("lines")  # CoNLL rows: each token's line
    bad = [i for i, tag in enumerate(tags) if parse_tag(tag) is None]
    for i in bad:
        where = f"{row.location.rsplit(':', 1)[0]}:{lines[i]}" if lines else row.location
        parsed.problems.append(Problem(where, TAGS, f"token {i + 1} {tokens[i]!r}: tag {tags[i]!r} is not "
                                                    "O, B-TYPE, I-TYPE, E-TYPE or S-TYPE"))
    if bad:
        return None
    spans, repaired = tags_to_spans(tags)
    parsed.repaired += [f"{row.location.rsplit(':', 1)[0]}:{lines[i]}" if lines else row.location for i in repaired]
    return Sentence(text, words, spans, row.location)


def _from_text(row: Row, column: str, labelled: bool, parsed: Parsed) -> Sentence | None:
    text = row.values[column]
    if not isinstance(text, str) or not text.strip():
        parsed.problems.append(Problem(row.location, column, "expected a non-empty text"))
        return None
    words = split_words(text)
    if not labelled:
        return Sentence(text, words, None, row.location)
    entities = row.values.get(ENTITIES)
    if not isinstance(entities, list):
        parsed.problems.append(Problem(row.location, ENTITIES, "expected a list of {\"start\", \"end\", \"label\"} "
                                                               "beside the text (an empty list: no entity)"))
        return None
    spans: list[Span] = []
    before = len(parsed.problems)
    for n, entity in enumerate(entities, start=1):
        span = _entity(entity, text, words, f"entity {n}", row.location, parsed.problems)
        if span is not None:
            spans.append(span)
    _overlaps(spans, words, row.location, parsed.problems)
    return Sentence(text, words, sorted(spans, key=lambda s: s.start), row.location) \
        if len(parsed.problems) == before else None


def _entity(entity: Any, text: str, words: list[tuple[int, int]], name: str, location: str,
            problems: list[Problem]) -> Span | None:
    """The word range of one {"start", "end", "label"} entity, or None with a problem."""
    if not isinstance(entity, dict) or not all(k in entity for k in ("start", "end", "label")):
        problems.append(Problem(location, ENTITIES, f"{name}: expected {{\"start\", \"end\", \"label\"}}, "
                                                    f"got {entity!r}"))
        return None
    start, end, label = entity["start"], entity["end"], entity["label"]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
        problems.append(Problem(location, ENTITIES, f"{name}: start and end must be integers"))
        return None
    if not isinstance(label, str) or not label.strip() or any(c.isspace() for c in label):
        problems.append(Problem(location, ENTITIES, f"{name}: label must be a non-empty string without spaces"))
        return None
    if not 0 <= start < end <= len(text):
        problems.append(Problem(location, ENTITIES, f"{name} [{start}, {end}) {label}: out of range for a text "
                                                    f"of {len(text)} characters"))
        return None
    found = char_to_word_spans(words, start, end)
    if found is None:
        problems.append(Problem(location, ENTITIES, f"{name} [{start}, {end}) {label} {text[start:end]!r}: "
                                                    "starts or ends inside a word"))
        return None
    return Span(found[0], found[1], label)


def _overlaps(spans: list[Span], words: list[tuple[int, int]], location: str, problems: list[Problem]) -> None:
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            chars = [(words[s.start][0], words[s.end - 1][1], s.label) for s in (a, b)]
            problems.append(Problem(location, ENTITIES, "entities [{}, {}) {} and [{}, {}) {} overlap "
                                                        "(nested entities are not supported)".format(*chars[0], *chars[1])))


def _strings(value: Any) -> TypeGuard[list[str]]:
    """A list of strings that are not blank."""
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
