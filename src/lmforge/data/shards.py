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
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmforge.atomic import write_file, write_text

ENCODE_BATCH = 1000  # documents per tokenizer call: large enough for the Rust tokenizer's threads


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def write_tokens(texts: Sequence[str], tokenizer: Any, path: Path, separator_id: int,
                 word_starts: bool = False) -> dict[str, Any]:
    """Tokenise `texts` into `path` (.bin) with a separator after each document; reuse a matching file.

    With `word_starts`, a parallel uint8 file marks tokens that begin a word (jieba segmentation for
    Chinese), for whole-word masking.
    """
    meta = {"tokenizer": _tokenizer_hash(tokenizer), "documents": len(texts), "separator_id": separator_id,
            "texts": hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16],
            "dtype": token_dtype(len(tokenizer)).name, "word_starts": word_starts}
    meta_path = path.with_suffix(".json")
    if meta_path.is_file() and path.is_file():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in meta} == meta:
            return old
    ids, starts = encode_tokens(texts, tokenizer, separator_id, word_starts)
    write_file(path, lambda tmp: ids.astype(meta["dtype"]).tofile(tmp))
    if word_starts:
        write_file(path.with_suffix(".words"), lambda tmp: starts.tofile(tmp))
    meta["tokens"] = int(len(ids))
    write_text(meta_path, json.dumps(meta, indent=1))
    return meta


def encode_tokens(texts: Sequence[str], tokenizer: Any, separator_id: int, word_starts: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `texts` joined by `separator_id` (int64), and their word-start flags (uint8; empty
    without `word_starts`)."""
    chunks: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = list(texts[start:start + ENCODE_BATCH])
        enc = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=word_starts)
        for n, row in enumerate(enc["input_ids"]):
            chunks.append(np.asarray(row + [separator_id], dtype=np.int64))
            if word_starts:
                flags.append(_word_start_flags(batch[n], enc["offset_mapping"][n], tokenizer.convert_ids_to_tokens(row)))
    ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return ids, (np.concatenate(flags) if flags else np.zeros(0, dtype=np.uint8))


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
