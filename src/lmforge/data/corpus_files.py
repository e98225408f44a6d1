"""Raw corpus files read as a stream of documents: .txt (one document per line, or blank-line
separated paragraphs), .jsonl (a text field per line), .json (a list of strings or of objects with
the text field), each optionally .gz-compressed and/or encrypted (.enc), and folders of these (read
in sorted order, so a build is reproducible).

Files are decoded incrementally, a megabyte at a time, so a file of any size streams; a .json list
and an encrypted file are the exceptions (each is read whole). An unreadable file raises
LmforgeError naming the file and line.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lmforge.data.normalize import unicode_problem
from lmforge.data.readers import check_regular_file, decode_error_message, file_bytes
from lmforge.errors import LmforgeError

SUFFIXES = (".txt", ".jsonl", ".json")
CHUNK = 1 << 20  # bytes read at a time


@dataclass
class Document:
    text: str
    source: str  # "path:line" of the document's first line


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


def read_documents(path: Path, text_field: str = "text", encoding: str = "utf-8", key_file: str = "") -> Iterator[Document]:
    """The documents of one corpus file (decrypted with `key_file` if it is a FILE.enc), streamed;
    raises LmforgeError naming the file (and line) when it is unreadable — possibly after yielding
    some documents, so a caller that must not keep part of a file reads it to the end first."""
    name = path.name[: -len(".enc")] if path.suffix.lower() == ".enc" else path.name
    gzipped = name.lower().endswith(".gz")
    suffix = Path(name[:-3] if gzipped else name).suffix.lower()
    if suffix not in SUFFIXES:
        raise LmforgeError(f"{path}: unsupported corpus file type {suffix or '(no suffix)'!r} "
                           f"(supported: {', '.join(SUFFIXES)}, optionally .gz and/or .enc)")
    if suffix == ".txt":
        paragraphs = any(not line.strip() for _, line in _lines(path, gzipped, encoding, key_file))
        yield from _text_documents(path, _lines(path, gzipped, encoding, key_file), paragraphs)
    elif suffix == ".jsonl":
        yield from _jsonl_documents(path, _lines(path, gzipped, encoding, key_file), text_field)
    else:
        yield from _json_documents(path, "\n".join(line for _, line in _lines(path, gzipped, encoding, key_file)),
                                   text_field)


def iter_corpus(inputs: list[str], text_field: str = "text", encoding: str = "utf-8",
                key_file: str = "") -> Iterator[Document]:
    """Documents of every input file, in order; the first unreadable file raises."""
    for path in input_files(inputs):
        yield from read_documents(path, text_field, encoding, key_file)


def _lines(path: Path, gzipped: bool, encoding: str, key_file: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, decoded incrementally: \\n, \\r\\n and \\r end a line, a
    leading BOM is dropped, and a NUL byte near the start or an undecodable byte names the file."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise LmforgeError(f"unknown encoding {encoding!r} (set --encoding to a valid codec, e.g. utf-8 or gb18030)") from None
    number, carry, first = 0, "", True
    for chunk in _chunks(path, gzipped, key_file):
        if first and b"\x00" in chunk[:8192]:
            raise LmforgeError(f"{path}: binary file (NUL bytes), not text")
        try:
            text = carry + decoder.decode(chunk)
        except UnicodeDecodeError as err:
            raise LmforgeError(decode_error_message(path, err.object, encoding, err, option="--encoding",
                                                    first_line=number + carry.count("\n") + 1)) from None
        if first:
            text, first = text.removeprefix("\ufeff"), False
        # A "\r" at the end may be the first half of "\r\n": keep it for the next chunk.
        body, carry = (text[:-1], "\r") if text.endswith("\r") else (text, "")
        *complete, rest = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        carry = rest + carry
        for line in complete:
            number += 1
            yield number, line
    tail = (carry + decoder.decode(b"", final=True)).replace("\r", "")
    if tail:
        yield number + 1, tail


def _chunks(path: Path, gzipped: bool, key_file: str) -> Iterator[bytes]:
    if path.suffix.lower() == ".enc":  # decrypted whole, in memory: AES-GCM authenticates the whole file
        raw: IO[bytes] = io.BytesIO(file_bytes(path, key_file)[0])
    else:
        check_regular_file(path)
        try:
            raw = open(path, "rb")
        except OSError as err:
            raise LmforgeError(f"{path}: cannot read ({err.strerror})") from None
    with raw, (gzip.GzipFile(fileobj=raw) if gzipped else contextlib.nullcontext(raw)) as stream:
        try:
            while chunk := stream.read(CHUNK):
                yield chunk
        except (OSError, EOFError) as err:
            raise LmforgeError(f"{path}: not a readable gzip file ({err})") from None


def _text_documents(path: Path, lines: Iterator[tuple[int, str]], paragraphs: bool) -> Iterator[Document]:
    """Blank-line separated paragraphs when the file has blank lines, else one document per line."""
    if not paragraphs:
        yield from (Document(line, f"{path}:{n}") for n, line in lines if line.strip())
        return
    buf: list[str] = []
    first = 0
    for n, line in lines:
        if line.strip():
            first = first or n
            buf.append(line)
        elif buf:
            yield Document("\n".join(buf), f"{path}:{first}")
            buf, first = [], 0
    if buf:
        yield Document("\n".join(buf), f"{path}:{first}")


def _jsonl_documents(path: Path, lines: Iterator[tuple[int, str]], text_field: str) -> Iterator[Document]:
    for n, line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise LmforgeError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        yield Document(document_text(value, text_field, f"{path}:{n}"), f"{path}:{n}")


def _json_documents(path: Path, text: str, text_field: str) -> Iterator[Document]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(value, list):
        raise LmforgeError(f"{path}: expected a JSON list of documents")
    yield from (Document(document_text(v, text_field, f"{path}: item {i}"), f"{path}: item {i}") for i, v in enumerate(value))


def document_text(value: object, text_field: str, where: str) -> str:
    """The text of one JSON document: a string, or an object's `text_field`; refused otherwise."""
    text = value.get(text_field) if isinstance(value, dict) else value
    if not isinstance(text, str):
        raise LmforgeError(f"{where}: expected a string or an object with a '{text_field}' text field")
    problem = unicode_problem(text)
    if problem:
        raise LmforgeError(f"{where}: {problem}")
    return text
