"""Raw pretraining corpora: clean documents, drop duplicates, count; read a built corpus back.

The files and their formats are `data.corpus_files`. A file that is binary or not UTF-8 is named with
the reason and skipped — or, with `strict`, refused before anything is written.

A build streams: files are read line by line, cleaned by worker processes one file each, and merged
in input order through an on-disk duplicate index (`data.dedup`), so memory does not grow with the
corpus and 1 or N workers write the same documents in the same order.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, overload

from lmforge.atomic import write_dir
from lmforge.data.corpus_files import SUFFIXES, Document, document_text, input_files, iter_corpus, read_documents
from lmforge.data.dedup import SeenKeys, fingerprint, near_keys
from lmforge.data.normalize import language, normalize
from lmforge.data.parallel import batched, ordered_map
from lmforge.errors import LmforgeError
from lmforge.log import logger

DOCS_FILE = "docs.jsonl"  # a built corpus folder: one {"text": ...} per line, plus stats.json
DEDUP = ("none", "exact", "minhash")
BATCH = 1000  # documents per shard record and per duplicate lookup


@dataclass
class CorpusStats:
    files: int = 0
    bad_files: dict[str, str] = field(default_factory=dict)  # path -> why it was skipped
    documents_read: int = 0
    documents_kept: int = 0
    characters: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> documents
    languages: Counter = field(default_factory=Counter)  # zh | en | mixed | other -> documents
    language_characters: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs.
        d = {f.name: dict(v) if isinstance(v := getattr(self, f.name), Counter) else v for f in fields(self)}
        dups = self.dropped["exact_duplicate"] + self.dropped["near_duplicate"]
        d["duplicate_rate"] = round(dups / max(self.documents_read, 1), 4)
        return d


@dataclass(frozen=True)
class Cleaning:
    """What a worker needs to clean one file (pickled to it)."""

    text_field: str = "text"
    encoding: str = "utf-8"
    key_file: str = ""
    min_chars: int = 20
    max_chars: int = 0
    redact_pii: bool = False
    dedup: str = "exact"


@dataclass
class Cleaned:
    """One file cleaned by a worker: its kept documents in a shard file, or why it is unreadable."""

    path: Path
    shard: Path
    error: str = ""
    documents_read: int = 0
    dropped: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)


def build_corpus(inputs: list[str], out: Path, dedup: str = "exact", min_chars: int = 20,
                 max_chars: int = 0, redact_pii: bool = False, text_field: str = "text",
                 strict: bool = False, encoding: str = "utf-8", workers: int = 1) -> CorpusStats:
    """Clean `inputs` into <out>/docs.jsonl with <out>/stats.json, written atomically.

    `workers` processes clean one file each; the results are merged in input order, so the output
    does not depend on `workers`."""
    if dedup not in DEDUP:
        raise LmforgeError(f"--dedup must be none, exact or minhash, not '{dedup}'")
    if workers < 1:
        raise LmforgeError(f"--workers must be at least 1, not {workers}")
    if 0 < max_chars < min_chars:
        raise LmforgeError(f"--min-chars {min_chars} is above --max-chars {max_chars}: every document would be dropped")
    files = input_files(inputs)
    stats = CorpusStats(files=len(files))
    cleaning = Cleaning(text_field, encoding, "", min_chars, max_chars, redact_pii, dedup)

    def fill(tmp: Path) -> None:
        work = tmp / ".work"
        work.mkdir()
        jobs = ((path, work / f"{n}.shard", cleaning) for n, path in enumerate(files))
        with open(tmp / DOCS_FILE, "w", encoding="utf-8") as docs, _Dedup(work, dedup) as seen, \
                contextlib.closing(ordered_map(clean_file, jobs, workers)) as cleaned:
            for result in cleaned:
                _merge(result, stats, strict, seen, docs)
        shutil.rmtree(work)
        if not stats.documents_kept:
            raise LmforgeError(f"no documents left from {', '.join(inputs)} ({_why_empty(stats)}); nothing written")
        (tmp / "stats.json").write_text(json.dumps(stats.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")

    write_dir(out, fill)
    return stats


def clean_file(job: tuple[Path, Path, Cleaning]) -> Cleaned:
    """Read, normalise and filter one file (in a worker process), writing each kept document's text,
    language and duplicate keys to `shard` in batches; an unreadable file gives `error` instead."""
    path, shard, how = job
    result = Cleaned(path, shard)
    try:
        with open(shard, "wb") as f:
            for batch in batched(read_documents(path, how.text_field, how.encoding, how.key_file), BATCH):
                pickle.dump(_clean_batch(batch, how, result), f)
    except LmforgeError as err:
        shard.unlink(missing_ok=True)
        return Cleaned(path, shard, error=str(err))
    return result


def load_texts(source: str, text_field: str = "text", encoding: str = "utf-8", key_file: str = "") -> Sequence[str]:
    """Texts for pretraining: a built corpus folder (read from disk on demand, so any size fits; one
    encrypted by `lmforge encrypt` is decrypted into memory), or raw corpus files/folders (normalised
    into memory; bad files are refused, since a training run should not silently lose part of its data)."""
    path = Path(source)
    if (path / DOCS_FILE).is_file():
        texts: Sequence[str] = CorpusTexts(path / DOCS_FILE)
    elif (path / f"{DOCS_FILE}.enc").is_file():
        texts = [d.text for d in read_documents(path / f"{DOCS_FILE}.enc", key_file=key_file)]
    else:
        texts = [t for t in (normalize(d.text) for d in iter_corpus([source], text_field, encoding, key_file)) if t]
    if not texts:
        raise LmforgeError(f"{source}: no documents (a corpus folder from lmforge corpus build, or "
                           f"{', '.join(SUFFIXES)} files)")
    return texts


class CorpusTexts(Sequence[str]):
    """The documents of a built corpus' docs.jsonl, read on demand: only each document's byte offset
    (8 bytes) stays in memory. Every line is checked once when the index is built, so a damaged file
    is refused before a run writes anything."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[bytes] | None = None  # opened on the first random access, kept for the next ones
        self.starts = array("q")
        with open(path, "rb") as f:
            position = 0
            for number, line in enumerate(f, 1):
                if line.strip():
                    _checked_text(line, f"{path}:{number}")
                    self.starts.append(position)
                position += len(line)

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._file is None:
            self._file = open(self.path, "rb")
        self._file.seek(self.starts[i])
        return _checked_text(self._file.readline(), f"{self.path}: document {i}")

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as f:
            yield from (_checked_text(line, str(self.path)) for line in f if line.strip())


class Subset(Sequence[str]):
    """The documents of `texts` at `positions`, in that order, without copying them (a training split
    of a corpus larger than memory)."""

    def __init__(self, texts: Sequence[str], positions: Sequence[int]):
        self.texts, self.positions = texts, positions

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self.texts[p] for p in self.positions[i]]
        return self.texts[self.positions[i]]


def _checked_text(line: bytes, where: str) -> str:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LmforgeError(f"{where}: not a corpus document ({err}); rebuild it with lmforge corpus build") from None
    return document_text(value, "text", where)


# ---------------------------------------------------------------------------- cleaning (workers)

def _clean_batch(batch: list[Document], how: Cleaning, result: Cleaned) -> list[tuple[str, str, bytes, list[bytes]]]:
    """(text, language, exact key, near keys) of the documents that pass the length filters."""
    kept = []
    for doc in batch:
        result.documents_read += 1
        text = normalize(doc.text)
        if how.redact_pii:
            from lmforge.privacy.pii import redact

            text, found = redact(text)
            result.pii.update(found)
        reason = _length_problem(text, how.min_chars, how.max_chars)
        if reason:
            result.dropped[reason] += 1
        else:
            kept.append(text)
    near = near_keys(kept) if how.dedup == "minhash" else [[] for _ in kept]
    return [(text, language(text), fingerprint(text), keys) for text, keys in zip(kept, near)]


def _length_problem(text: str, min_chars: int, max_chars: int) -> str:
    if not text:
        return "empty"
    if len(text) < min_chars:
        return "too_short"
    if max_chars and len(text) > max_chars:
        return "too_long"
    return ""


# ---------------------------------------------------------------------------- merging (main process)

class _Dedup:
    """The exact and near-duplicate indexes of one build, on disk in its work folder."""

    def __init__(self, work: Path, dedup: str):
        self.exact = SeenKeys(work / "exact.sqlite") if dedup != "none" else None
        self.near = SeenKeys(work / "near.sqlite") if dedup == "minhash" else None

    def __enter__(self) -> _Dedup:
        return self

    def __exit__(self, *_: object) -> None:
        for index in (self.exact, self.near):
            if index is not None:
                index.close()

    def reasons(self, records: list[tuple[str, str, bytes, list[bytes]]]) -> list[str]:
        """Per record, in order: "" to keep it, else the duplicate kind that drops it."""
        reasons = [""] * len(records)
        if self.exact is not None:
            fresh = self.exact.first_seen([[r[2]] for r in records])
            reasons = ["" if new else "exact_duplicate" for new in fresh]
        if self.near is not None:
            left = [i for i, reason in enumerate(reasons) if not reason]
            for i, new in zip(left, self.near.first_seen([records[i][3] for i in left])):
                reasons[i] = "" if new else "near_duplicate"
        return reasons


def _why_empty(stats: CorpusStats) -> str:
    """What took every document: skipped files (the first one's reason) and dropped documents."""
    reasons = []
    if stats.bad_files:
        error = next(iter(stats.bad_files.values()))
        reasons.append(f"{len(stats.bad_files)} of {stats.files} files skipped, e.g. {error}")
    if stats.dropped:
        reasons.append(f"dropped: {dict(stats.dropped)}")
    return "; ".join(reasons) or "no documents in the files"


def _merge(result: Cleaned, stats: CorpusStats, strict: bool, seen: _Dedup, docs: IO[str]) -> None:
    """Add one cleaned file to the corpus: its documents that are not duplicates, and its counts."""
    if result.error:
        if strict:
            raise LmforgeError(f"{result.error} (drop the file, or build without --strict to skip it)")
        stats.bad_files[str(result.path)] = result.error
        logger.warning(f"skipped: {result.error}")
        return
    stats.documents_read += result.documents_read
    stats.dropped.update(result.dropped)
    stats.pii.update(result.pii)
    with open(result.shard, "rb") as f:
        for records in _shard_batches(f):
            for (text, lang, _, _), reason in zip(records, seen.reasons(records)):
                if reason:
                    stats.dropped[reason] += 1
                    continue
                stats.documents_kept += 1
                stats.languages[lang] += 1
                stats.language_characters[lang] += len(text)
                stats.characters += len(text)
                docs.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    result.shard.unlink()


def _shard_batches(f: IO[bytes]) -> Iterator[list[tuple[str, str, bytes, list[bytes]]]]:
    while True:
        try:
            yield pickle.load(f)
        except EOFError:
            return
