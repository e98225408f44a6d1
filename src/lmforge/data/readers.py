"""Read tabular training data from disk into rows that remember where they came from.

Every row carries a location ("path:line" or "path:row N") so that validation can point the
user at the exact place to fix. Readers collect every structural problem in a file and raise
them together, so one run shows everything wrong instead of one error per attempt.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import DataError, LmforgeError, Problem

SUPPORTED = (".csv, .tsv, .jsonl, .json, .parquet, .conll (.bio .iob .bioes: token and tag per line), "
             "or a folder written by datasets' save_to_disk")
CONLL_SUFFIXES = (".conll", ".bio", ".iob", ".bioes")
# What a path can be besides a file or folder; reading it as data hangs (a pipe waits for a writer) or
# never ends (/dev/zero, /dev/urandom).
SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
           (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class Row:
    """One record of input data and where it is in the source file."""

    location: str  # "path:line" for CSV/TSV/JSONL, "path:row N" for JSON, Parquet, HF folders
    values: dict[str, Any]


def read_rows(path: str | Path, encoding: str = "utf-8", key_file: str = "") -> list[Row]:
    """Read every row of a data file, choosing the reader from the file suffix.

    `encoding` applies to the text formats (CSV, TSV, JSONL, JSON); Parquet and HF folders carry
    their own encoding. A file encrypted by `lmforge encrypt` (`train.csv.enc`) is decrypted in
    memory with `key_file` and read by its inner suffix. Raises LmforgeError for an unreadable
    file and DataError listing every malformed row; a partially read file is never returned.
    """
    path = Path(path)
    rows = _read_any(path, encoding, key_file)
    if not rows:  # a header alone, blank lines, [] : every caller would fail later, and less clearly
        raise LmforgeError(f"{path}: no data rows")
    return rows


def _read_any(path: Path, encoding: str, key_file: str) -> list[Row]:
    if not path.exists():
        raise LmforgeError(f"file not found: {path}")
    if path.is_dir():
        return _read_hf_folder(path)
    data, suffix = file_bytes(path, key_file)
    reader = _TEXT_READERS.get(suffix)
    if reader is not None:
        return reader(path, decode_text(path, data, encoding))
    if suffix == ".parquet":
        return _read_parquet(path, data)
    raise LmforgeError(f"{path}: unsupported data format {suffix or '(no suffix)'!r}; "
                       f"supported: {SUPPORTED}")


def file_bytes(path: Path, key_file: str) -> tuple[bytes, str]:
    """The file's content and the suffix that names its format (the inner one of FILE.csv.enc).

    Every reader of user files goes through here, so encryption at rest covers tables and raw
    corpora alike."""
    from lmforge.privacy.crypto import SUFFIX, decrypt_file

    check_regular_file(path)
    if path.suffix.lower() != SUFFIX:
        return path.read_bytes(), path.suffix.lower()
    if not key_file:
        raise LmforgeError(f"{path} is encrypted: give its key file with data.key_file=PATH")
    return decrypt_file(path, key_file), path.with_suffix("").suffix.lower()


def check_regular_file(path: Path) -> None:
    """Refuse, before opening it, a path (or a link to one) that is a pipe, device or socket."""
    mode = path.stat().st_mode
    for test, kind in SPECIAL:
        if test(mode):
            raise LmforgeError(f"{path} is {kind}, not a data file: give a regular file")


# ---------------------------------------------------------------------------- text decoding

def decode_text(path: Path, data: bytes, encoding: str) -> str:
    """Decode the whole file up front so a wrong encoding is reported once, with a fix."""
    try:
        text = data.decode(encoding)
    except LookupError:
        raise LmforgeError(f"unknown encoding {encoding!r} (set data.encoding to a valid codec, "
                           f"e.g. utf-8 or gb18030)") from None
    except UnicodeDecodeError as err:
        raise LmforgeError(decode_error_message(path, data, encoding, err)) from None
    # Excel and Windows Notepad prepend a BOM; left in, it would corrupt the first column name.
    return text.removeprefix("\ufeff")


def decode_error_message(path: Path, data: bytes, encoding: str, err: UnicodeDecodeError,
                         option: str = "data.encoding", first_line: int = 1) -> str:
    """Explain a decode failure: where it happened and which encoding the file probably uses
    (`data` may be a piece of the file that starts at line `first_line`)."""
    line = data[: err.start].count(b"\n") + first_line
    head = f"{path}:{line}: cannot decode as {encoding} (byte 0x{data[err.start]:02x})"
    guess = _guess_encoding(data)
    if guess is None or _same_codec(guess, encoding):
        return f"{head}; could not detect the encoding, set {option} to the file's encoding"
    return f"{head}; it looks like {guess.upper()}, set {option}={guess}"


def _guess_encoding(data: bytes) -> str | None:
    """Best guess at the file's encoding; imported lazily because it is only needed on failure."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return best.encoding if best is not None else None


def _same_codec(a: str, b: str) -> bool:
    """Compare encoding names by codec, since 'utf_8', 'UTF-8' and 'utf8' are all one codec."""
    try:
        return codecs.lookup(a).name == codecs.lookup(b).name
    except LookupError:
        return False


# ---------------------------------------------------------------------------- CSV / TSV

def _read_csv(path: Path, text: str) -> list[Row]:
    """Comma-separated rows with a header line."""
    return _read_delimited(path, text, ",")


def _read_tsv(path: Path, text: str) -> list[Row]:
    """Tab-separated rows with a header line; quoting as pandas writes it (`to_csv(sep='\\t')`)."""
    return _read_delimited(path, text, "\t")


def _read_delimited(path: Path, text: str, delimiter: str) -> list[Row]:
    """Parse delimited text, locating each row by the physical line it starts on.

    A quoted field may span several lines, so a row's line is one past where the previous row
    ended (csv's `line_num`), not a count of rows.
    """
    # newline="" keeps line endings inside quoted fields intact, as the csv module requires.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = _read_header(path, reader)
    rows: list[Row] = []
    problems: list[Problem] = []
    start = reader.line_num + 1
    try:
        for fields in reader:
            if fields:  # csv yields [] for a blank line; nothing to report there
                _add_delimited_row(path, start, header, fields, rows, problems)
            start = reader.line_num + 1
    except csv.Error as err:
        problems.append(Problem(f"{path}:{start}", "", f"malformed row: {err}"))
    if problems:
        raise DataError(problems)
    return rows


def _read_header(path: Path, reader: Any) -> list[str]:
    """The first non-blank row names the columns; duplicates would silently drop a column."""
    try:
        header = next((fields for fields in reader if fields), None)
    except csv.Error as err:
        raise LmforgeError(f"{path}:{reader.line_num}: malformed header: {err}") from None
    if header is None:
        raise LmforgeError(f"{path}: file is empty; a header row naming the columns is required")
    names = [name.strip() for name in header]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LmforgeError(f"{path}:{reader.line_num}: duplicate column name(s) in header: "
                           f"{', '.join(duplicates)}")
    return names


def _add_delimited_row(path: Path, line: int, header: list[str], fields: list[str],
                       rows: list[Row], problems: list[Problem]) -> None:
    """Append the row, or a problem if its field count disagrees with the header."""
    location = f"{path}:{line}"
    if len(fields) != len(header):
        problems.append(Problem(location, "", f"expected {len(header)} fields, got {len(fields)}"))
        return
    rows.append(Row(location, dict(zip(header, fields))))


# ---------------------------------------------------------------------------- JSON / JSONL

def _read_jsonl(path: Path, text: str) -> list[Row]:
    """One JSON object per line; blank lines are skipped but still counted for locations."""
    rows: list[Row] = []
    problems: list[Problem] = []
    # split("\n") rather than splitlines(): JSON strings may legally contain U+2028 etc.,
    # which splitlines() would treat as line breaks and so shift every later line number.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        location = f"{path}:{number}"
        try:
            value = _loads(line)
        except json.JSONDecodeError as err:
            message = f"not valid JSON: {err.msg} (column {err.colno})"
            problems.append(Problem(location, "", message))
            continue
        except DuplicateKey as err:
            problems.append(Problem(location, "", str(err)))
            continue
        _add_object(location, value, rows, problems)
    if problems:
        raise DataError(problems)
    return rows


def _read_json(path: Path, text: str) -> list[Row]:
    """A JSON array of objects, or an object wrapping one such array (e.g. {"data": [...]})."""
    try:
        document = _loads(text)
    except json.JSONDecodeError as err:
        raise DataError([Problem(f"{path}:{err.lineno}", "",
                                 f"not valid JSON: {err.msg} (column {err.colno})")]) from None
    except DuplicateKey as err:
        raise DataError([Problem(str(path), "", str(err))]) from None
    items = _json_records(path, document)
    rows: list[Row] = []
    problems: list[Problem] = []
    for index, value in enumerate(items, start=1):
        _add_object(f"{path}:row {index}", value, rows, problems)
    if problems:
        raise DataError(problems)
    return rows


class DuplicateKey(ValueError):
    """A JSON object giving one key twice."""


def _loads(text: str) -> Any:
    """json.loads, refusing an object that gives a key twice: JSON would keep the last value without a
    word (`{"label": "pos", "label": "neg"}` trains as neg)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) < len(pairs):
            twice = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
            raise DuplicateKey(f"key '{twice}' is given twice in one object")
        return found

    return json.loads(text, object_pairs_hook=unique)


def _json_records(path: Path, document: Any) -> list[Any]:
    """Find the list of records in a JSON document, or explain which shapes are accepted."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        if len(lists) == 1:
            return document[lists[0]]
        if lists:
            raise LmforgeError(f"{path}: several list-valued keys ({', '.join(lists)}); "
                               f"keep only the one holding the records")
    raise LmforgeError(f"{path}: expected a JSON array of objects, or an object with one "
                       f"list-valued key such as {{\"data\": [...]}}")


def _add_object(location: str, value: Any, rows: list[Row], problems: list[Problem]) -> None:
    """Append a JSON object as a row, or a problem if the value is not an object."""
    if isinstance(value, dict):
        rows.append(Row(location, _missing_as_none(value)))
    else:
        message = f"expected a JSON object, got {type(value).__name__}"
        problems.append(Problem(location, "", message))


# ---------------------------------------------------------------------------- CoNLL

def _read_conll(path: Path, text: str) -> list[Row]:
    """Token-per-line files, a blank line between sentences: the first field is the token, the last
    the tag (so CoNLL-2003's four columns read too); `-DOCSTART-` lines are skipped.

    Each sentence is a row {"tokens", "tags", "lines"} located at its first line; "lines" keeps
    every token's line so a bad tag found later is reported where it is."""
    rows: list[Row] = []
    problems: list[Problem] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush() -> None:
        if tokens:
            rows.append(Row(f"{path}:{lines[0]}", {"tokens": list(tokens), "tags": list(tags), "lines": list(lines)}))
        tokens.clear(), tags.clear(), lines.clear()

    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields:
            flush()
        elif fields[0] == "-DOCSTART-":
            flush()
        elif len(fields) < 2:
            problems.append(Problem(f"{path}:{number}", "", f"expected a token and a tag, got {line.strip()!r}"))
        else:
            tokens.append(fields[0])
            tags.append(fields[-1])
            lines.append(number)
    flush()
    if problems:
        raise DataError(problems)
    return rows


# ---------------------------------------------------------------------------- binary formats

def _read_parquet(path: Path, data: bytes) -> list[Row]:
    """Read via pyarrow directly: `to_pylist` yields plain Python values and None for nulls,
    where pandas would give numpy scalars and NaN that validation would have to special-case."""
    import pyarrow
    import pyarrow.parquet

    try:
        records = pyarrow.parquet.read_table(pyarrow.BufferReader(data)).to_pylist()
    except (pyarrow.ArrowException, OSError) as err:
        raise LmforgeError(f"{path}: cannot read Parquet file: {err}") from None
    return _numbered_rows(path, records)


def _read_hf_folder(path: Path) -> list[Row]:
    """Read a `Dataset` saved with `save_to_disk`; a `DatasetDict` must be narrowed to one split."""
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        raise LmforgeError(f"{path} holds several splits ({', '.join(splits)}); point at one of "
                           f"them, e.g. {path / splits[0]}")
    if not (path / "state.json").is_file():
        raise LmforgeError(f"{path} is a folder but not one written by datasets' save_to_disk; "
                           f"supported: {SUPPORTED}")
    # Imported here because `datasets` takes seconds to import and most runs read plain files.
    from datasets import load_from_disk

    return _numbered_rows(path, load_from_disk(str(path)).to_list())


def _numbered_rows(path: Path, records: list[dict[str, Any]]) -> list[Row]:
    """Wrap records from a line-less format, numbering rows from 1."""
    return [Row(f"{path}:row {index}", _missing_as_none(record)) for index, record in enumerate(records, start=1)]


def _missing_as_none(values: dict[str, Any]) -> dict[str, Any]:
    """NaN is how pandas, Parquet and JSON exporters write a missing value; as a float it would pass
    for a label ('nan', a class of its own) or a number. Validation reports None as missing."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


_TEXT_READERS: dict[str, Callable[[Path, str], list[Row]]] = {
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    **{suffix: _read_conll for suffix in CONLL_SUFFIXES},
}
