"""Duplicate detection that works on corpora larger than memory: keys computed per document (in any
process), remembered in an on-disk index.

- exact duplicates: a 16-byte hash of the text without whitespace;
- near duplicates: MinHash-LSH over character 5-gram shingles (datasketch computes the signatures
  and picks the bands and rows for the Jaccard threshold); two documents are near duplicates when
  one band of their signatures is equal, as `datasketch.MinHashLSH.query` decides. Each band is kept
  as an 8-byte hash of (band number, band values).

The index is a SQLite table of keys (datasketch's own indexes live in memory, Redis or Cassandra),
so its size is bounded by disk, not RAM: SQLite keeps at most `CACHE_MB` of it in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

THRESHOLD = 0.8  # Jaccard similarity above which two documents are near duplicates
NUM_PERM = 128
SHINGLE = 5
CACHE_MB = 64
_QUERY = 30_000  # keys per SELECT (SQLite allows 32,766 parameters)


def fingerprint(text: str) -> bytes:
    """Exact-duplicate key: a hash of the text with all whitespace removed."""
    return hashlib.blake2b("".join(text.split()).encode("utf-8"), digest_size=16).digest()


@lru_cache(maxsize=1)
def _bands() -> list[tuple[int, int]]:
    from datasketch import MinHashLSH

    return list(MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM).hashranges)


def near_keys(texts: Sequence[str]) -> list[list[bytes]]:
    """The LSH band keys of each text: equal keys in one band mean a near-duplicate pair."""
    from datasketch import MinHash
    from xxhash import xxh32_intdigest

    shingled = []
    for text in texts:
        compact = "".join(text.split())
        shingled.append({compact[i:i + SHINGLE].encode("utf-8") for i in range(max(1, len(compact) - SHINGLE + 1))})
    keys = []
    # xxhash instead of datasketch's default SHA-1 per shingle: the same 32-bit hash quality, and
    # hashing the shingles was 60% of a build's time.
    for signature in MinHash.generator(shingled, num_perm=NUM_PERM, hashfunc=xxh32_intdigest):
        values = signature.hashvalues
        keys.append([hashlib.blake2b(bytes([n]) + values[start:end].tobytes(), digest_size=8).digest()
                     for n, (start, end) in enumerate(_bands())])
    return keys


class SeenKeys:
    """A set of byte keys in a SQLite file: which documents were seen before, for any corpus size."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path)
        # A scratch index: no journal, no fsync; the build that owns it deletes it at the end.
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_MB * 1024}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (key BLOB PRIMARY KEY) WITHOUT ROWID")

    def first_seen(self, groups: Sequence[Sequence[bytes]]) -> list[bool]:
        """For each group of keys, in order: False when one of its keys was added before (by an earlier
        group or call), else True, and its keys are added. One lookup for the whole batch."""
        known = self._existing({key for group in groups for key in group})
        added: list[bytes] = []
        verdicts = []
        for group in groups:
            new = not any(key in known for key in group)
            if new:
                known.update(group)
                added.extend(group)
            verdicts.append(new)
        self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", ((key,) for key in sorted(added)))
        return verdicts

    def close(self) -> None:
        self.db.close()

    def _existing(self, keys: set[bytes]) -> set[bytes]:
        ordered = sorted(keys)
        found: set[bytes] = set()
        for start in range(0, len(ordered), _QUERY):
            chunk = ordered[start:start + _QUERY]
            rows = self.db.execute(f"SELECT key FROM seen WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update(row[0] for row in rows)
        return found
