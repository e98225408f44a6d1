"""Raw pretraining corpora: read documents from text files, clean them, drop duplicates, count.

Accepted inputs: .txt (one document per line, or blank-line separated paragraphs), .jsonl (a text
field per line), .json (a list of strings or of objects with the text field), each optionally
.gz-compressed, and folders of these (read in sorted order, so a build is reproducible).
A file that is binary or not UTF-8 is named with the reason and skipped — or, with `strict`,
refused before anything is written.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

from lmforge.atomic import write_dir
from lmforge.data.normalize import NearDuplicates, fingerprint, language, normalize
from lmforge.data.readers import decode_error_message, file_bytes
from lmforge.errors import LmforgeError
from lmforge.log import logger

DOCS_FILE = "docs.jsonl"  # a built corpus folder: one {"text": ...} per line, plus stats.json
SUFFIXES = (".txt", ".jsonl", ".json")


@dataclass
class Document:
    text: str
    source: str  # "path:line" of the document's first line


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


def input_files(inputs: list[str]) -> list[Path]:
    """Every corpus file under `inputs` (files or folders), sorted; a missing input is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise LmforgeError(f"corpus input not found: {path}")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    return files


def read_documents(path: Path, text_field: str = "text", encoding: str = "utf-8", key_file: str = "") -> list[Document]:
    """The documents of one corpus file (decrypted with `key_file` if it is a FILE.enc); raises
    LmforgeError naming the file (and line) if unreadable."""
    raw, outer = file_bytes(path, key_file)
    name = path.name[: -len(".enc")] if outer != path.suffix.lower() else path.name
    stem = name[:-3] if name.endswith(".gz") else name
    suffix = Path(stem).suffix.lower()
    if suffix not in SUFFIXES:
        raise LmforgeError(f"{path}: unsupported corpus file type {suffix or '(no suffix)'!r} "
                           f"(supported: {', '.join(SUFFIXES)}, optionally .gz and/or .enc)")
    text = _decode(path, raw, name.endswith(".gz"), encoding)
    if suffix == ".txt":
        return _text_documents(path, text)
    if suffix == ".jsonl":
        return _jsonl_documents(path, text, text_field)
    return _json_documents(path, text, text_field)


def iter_corpus(inputs: list[str], text_field: str = "text", strict: bool = False,
                stats: CorpusStats | None = None, encoding: str = "utf-8", key_file: str = "") -> Iterator[Document]:
    """Documents of every input file, in order. Bad files are recorded in `stats` and skipped,
    or (strict) raise before the first document is yielded."""
    files = input_files(inputs)
    stats = stats if stats is not None else CorpusStats()
    readable: list[tuple[Path, list[Document]]] = []
    for path in files:
        try:
            readable.append((path, read_documents(path, text_field, encoding, key_file)))
        except LmforgeError as err:
            if strict:
                raise LmforgeError(f"{err} (drop the file, or build without --strict to skip it)") from None
            stats.bad_files[str(path)] = str(err)
            logger.warning(f"skipped: {err}")
    stats.files = len(files)
    for _, docs in readable:
        yield from docs


def build_corpus(inputs: list[str], out: Path, dedup: str = "exact", min_chars: int = 20,
                 max_chars: int = 0, redact_pii: bool = False, text_field: str = "text",
                 strict: bool = False, encoding: str = "utf-8") -> CorpusStats:
    """Clean `inputs` into <out>/docs.jsonl with <out>/stats.json, written atomically."""
    if dedup not in ("none", "exact", "minhash"):
        raise LmforgeError(f"--dedup must be none, exact or minhash, not '{dedup}'")
    stats = CorpusStats()
    kept: list[str] = []
    seen: set[bytes] = set()
    near = NearDuplicates() if dedup == "minhash" else None
    for doc in iter_corpus(inputs, text_field, strict, stats, encoding):
        stats.documents_read += 1
        text = normalize(doc.text)
        if redact_pii:
            from lmforge.privacy.pii import redact

            text, found = redact(text)
            stats.pii.update(found)
        reason = _drop_reason(text, min_chars, max_chars, seen if dedup != "none" else None, near)
        if reason:
            stats.dropped[reason] += 1
            continue
        lang = language(text)
        stats.languages[lang] += 1
        stats.language_characters[lang] += len(text)
        stats.characters += len(text)
        kept.append(text)
    stats.documents_kept = len(kept)
    if not kept:
        raise LmforgeError(f"no documents left from {', '.join(inputs)} (dropped: {dict(stats.dropped)}); nothing written")

    def fill(tmp: Path) -> None:
        with open(tmp / DOCS_FILE, "w", encoding="utf-8") as f:
            for text in kept:
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        (tmp / "stats.json").write_text(json.dumps(stats.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")

    write_dir(out, fill)
    return stats


def load_texts(source: str, text_field: str = "text", encoding: str = "utf-8", key_file: str = "") -> list[str]:
    """Texts for pretraining: a built corpus folder (also one encrypted by `lmforge encrypt`), or raw
    corpus files/folders (normalised here; bad files are refused, since a training run should not
    silently lose part of its data)."""
    path = Path(source)
    for built in (path / DOCS_FILE, path / f"{DOCS_FILE}.enc"):
        if built.is_file():
            return [d.text for d in read_documents(built, key_file=key_file)]
    texts = [normalize(d.text) for d in iter_corpus([source], text_field, strict=True, encoding=encoding,
                                                      key_file=key_file)]
    return [t for t in texts if t]


def _drop_reason(text: str, min_chars: int, max_chars: int, seen: set[bytes] | None,
                 near: NearDuplicates | None) -> str | None:
    if not text:
        return "empty"
    if len(text) < min_chars:
        return "too_short"
    if max_chars and len(text) > max_chars:
        return "too_long"
    if seen is not None:
        key = fingerprint(text)
        if key in seen:
            return "exact_duplicate"
        seen.add(key)
    if near is not None and near.seen(text):
        return "near_duplicate"
    return None


def _decode(path: Path, raw: bytes, gzipped: bool, encoding: str) -> str:
    if gzipped:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise LmforgeError(f"{path}: not a readable gzip file ({err})") from None
    if b"\x00" in raw[:8192]:
        raise LmforgeError(f"{path}: binary file (NUL bytes), not text")
    try:
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise LmforgeError(decode_error_message(path, raw, encoding, err, option="--encoding")) from None


def _text_documents(path: Path, text: str) -> list[Document]:
    """Blank-line separated paragraphs when the file has blank lines, else one document per line."""
    lines = text.splitlines()
    if not any(not line.strip() for line in lines):
        return [Document(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]
    docs, buf, first = [], [], 0
    for n, line in enumerate(lines + [""], 1):
        if line.strip():
            first = first or n
            buf.append(line)
        elif buf:
            docs.append(Document("\n".join(buf), f"{path}:{first}"))
            buf, first = [], 0
    return docs


def _jsonl_documents(path: Path, text: str, text_field: str) -> list[Document]:
    docs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise LmforgeError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        docs.append(Document(_field(value, text_field, f"{path}:{n}"), f"{path}:{n}"))
    return docs


def _json_documents(path: Path, text: str, text_field: str) -> list[Document]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(value, list):
        raise LmforgeError(f"{path}: expected a JSON list of documents")
    return [Document(_field(v, text_field, f"{path}: item {i}"), f"{path}: item {i}") for i, v in enumerate(value)]


def _field(value: object, text_field: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get(text_field), str):
        return value[text_field]
    raise LmforgeError(f"{where}: expected a string or an object with a '{text_field}' text field")
