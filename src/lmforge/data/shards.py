"""Tokenise a corpus once into a memory-mapped token file, then serve fixed-length blocks from it.

Documents are concatenated with a separator token and cut into blocks of one length, so a batch
has no padding at all (nanoGPT's `prepare.py` layout). The file is uint16 when the vocabulary fits,
halving memory and disk against int32. A `meta.json` beside it records what produced it; a later
run (a resume, or a second objective on the same corpus) reuses the file only if it matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.atomic import write_file, write_text
from lmforge.data.parallel import batched, ordered_map

ENCODE_BATCH = 1000  # documents per tokenizer call: large enough for the Rust tokenizer's threads
_TOKENIZER: list[Any] = []  # the tokenizer of this worker process (set by `_use_tokenizer`)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def write_tokens(texts: Sequence[str], tokenizer: Any, path: Path, separator_id: int,
                 word_starts: bool = False, workers: int = 1) -> dict[str, Any]:
    """Tokenise `texts` into `path` (.bin) with a separator after each document; reuse a matching file.

    With `word_starts`, a parallel uint8 file marks tokens that begin a word (jieba segmentation for
    Chinese), for whole-word masking. The texts are streamed (read twice: once to fingerprint them,
    once to encode), `workers` processes encode batches of them, and the batches are appended in
    order, so memory does not grow with the corpus and the file does not depend on `workers`.
    """
    digest, documents = hashlib.sha256(), 0
    for text in texts:
        digest.update(("\x00" if documents else "").encode() + text.encode("utf-8"))
        documents += 1
    meta = {"tokenizer": _tokenizer_hash(tokenizer), "documents": documents, "separator_id": separator_id,
            "texts": digest.hexdigest()[:16], "dtype": token_dtype(len(tokenizer)).name, "word_starts": word_starts}
    meta_path = path.with_suffix(".json")
    if meta_path.is_file() and path.is_file():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in meta} == meta:
            return old
    count = 0

    def fill(ids_tmp: Path, words_tmp: Path | None) -> None:
        nonlocal count
        with open(ids_tmp, "wb") as ids_file, open(words_tmp or os.devnull, "wb") as words_file:
            for ids, flags in _encoded(texts, tokenizer, separator_id, word_starts, workers):
                ids.astype(meta["dtype"]).tofile(ids_file)
                flags.tofile(words_file)
                count += len(ids)

    if word_starts:  # both files appear together, after the last batch
        write_file(path.with_suffix(".words"), lambda words_tmp: write_file(path, lambda tmp: fill(tmp, words_tmp)))
    else:
        write_file(path, lambda tmp: fill(tmp, None))
    meta["tokens"] = count
    write_text(meta_path, json.dumps(meta, indent=1))
    return meta


def encode_tokens(texts: Iterable[str], tokenizer: Any, separator_id: int, word_starts: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `texts` joined by `separator_id` (int64), and their word-start flags (uint8; empty
    without `word_starts`), in memory."""
    parts = list(_encoded(texts, tokenizer, separator_id, word_starts, workers=1))
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    flags = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.uint8)
    return ids, flags


def _encoded(texts: Iterable[str], tokenizer: Any, separator_id: int, word_starts: bool, workers: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, word flags) of each batch of ENCODE_BATCH texts, in order, encoded by `workers` processes."""
    batches = ((batch, separator_id, word_starts) for batch in batched(texts, ENCODE_BATCH))
    return ordered_map(_encode_batch, batches, workers, initializer=_use_tokenizer, initargs=(tokenizer,))


def _use_tokenizer(tokenizer: Any) -> None:
    _TOKENIZER[:] = [tokenizer]


def _encode_batch(job: tuple[list[str], int, bool]) -> tuple[np.ndarray, np.ndarray]:
    batch, separator_id, word_starts = job
    tokenizer = _TOKENIZER[0]
    enc = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=word_starts)
    chunks = [np.asarray(row + [separator_id], dtype=np.int64) for row in enc["input_ids"]]
    flags = [_word_start_flags(text, offsets, tokenizer.convert_ids_to_tokens(row))
             for text, offsets, row in zip(batch, enc["offset_mapping"], enc["input_ids"])] if word_starts else []
    return (np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64),
            np.concatenate(flags) if flags else np.zeros(0, dtype=np.uint8))


def _word_start_flags(text: str, offsets: list[tuple[int, int]], tokens: list[str]) -> np.ndarray:
    """1 where a token starts a word: at a jieba word boundary, and never on a '##' continuation.

    The separator after the document counts as its own word.
    """
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at DEBUG on every first use
    boundaries, pos = set(), 0
    for word in jieba.cut(text, HMM=False):
        boundaries.add(pos)
        pos += len(word)
    flags = [1 if (start in boundaries and not tok.startswith("##")) else 0 for (start, _), tok in zip(offsets, tokens)]
    return np.asarray(flags + [1], dtype=np.uint8)


def _tokenizer_hash(tokenizer: Any) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()[:16]


def open_blocks(path: Path, dtype: str, length: int, limit: int = 0, word_starts: bool = False) -> Blocks:
    """The blocks of a token file written by `write_tokens`, memory-mapped (read lazily)."""
    words = np.memmap(path.with_suffix(".words"), dtype=np.uint8, mode="r") if word_starts else None
    return Blocks(np.memmap(path, dtype=dtype, mode="r"), words, length, limit)


class Blocks(Sequence):
    """Fixed-length windows of a token array (a memory-mapped file, or in memory) as features
    ({"input_ids": int64 array}, plus "word_starts" when word flags are given).

    `limit` keeps only the first n blocks (evaluation uses a fixed subset); the trailing partial
    block is dropped, as every block must have the same length.
    """

    def __init__(self, tokens: np.ndarray, words: np.ndarray | None, length: int, limit: int = 0):
        self.tokens, self.words = tokens, words
        self.length = length
        n = len(self.tokens) // length
        self.n = min(n, limit) if limit else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        window = slice(i * self.length, (i + 1) * self.length)
        feature = {"input_ids": self.tokens[window].astype(np.int64)}
        if self.words is not None:
            feature["word_starts"] = np.array(self.words[window])  # a copy: torch refuses read-only memory
        return feature
