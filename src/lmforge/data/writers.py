"""Writing data records back to a file in the format they were read from (see `readers`).

Tools that rewrite a data file (PII redaction, canary insertion) keep its format: converting on
the way would flatten nested values (chat `messages`) into strings.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError

Record = dict[str, Any]


def writer_for(src: Path, dst: Path, encoding: str) -> Callable[[Path, list[Record]], None]:
    """The writer for `dst`, after refusing to overwrite the input or to change format.

    Converting formats on the way would flatten nested values into strings, so the output
    suffix must match the input's.
    """
    if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(dst, src)):
        raise LmforgeError(f"refusing to overwrite the input {src}; choose another output file")
    suffix = dst.suffix.lower()
    if suffix not in (*_TEXT_WRITERS, ".parquet"):
        raise LmforgeError(f"{dst}: cannot write {suffix or '(no suffix)'!r}; "
                           f"supported: {', '.join(_TEXT_WRITERS)}, .parquet")
    if suffix != src.suffix.lower():
        raise LmforgeError(f"{dst}: output must have the input's format ({src.suffix or 'none'})")
    if suffix == ".parquet":
        return partial(_write_parquet, src=src)
    return partial(_TEXT_WRITERS[suffix], encoding=encoding)


def _write_delimited(path: Path, records: list[Record], encoding: str, delimiter: str) -> None:
    """CSV/TSV with the input's columns in their original order."""
    names = list(dict.fromkeys(key for record in records for key in record))
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.DictWriter(f, names, delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def _write_jsonl(path: Path, records: list[Record], encoding: str) -> None:
    """One object per line; ensure_ascii=False keeps Chinese readable."""
    with open(path, "w", encoding=encoding) as f:
        f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _write_json(path: Path, records: list[Record], encoding: str) -> None:
    """A JSON array of the records (an input's {"data": [...]} wrapper is not kept)."""
    with open(path, "w", encoding=encoding) as f:
        json.dump(records, f, ensure_ascii=False, indent=2)


def _write_parquet(path: Path, records: list[Record], src: Path) -> None:
    """Parquet with the input's schema, so column types and nulls survive the round trip."""
    import pyarrow
    import pyarrow.parquet

    schema = pyarrow.parquet.read_schema(src)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records, schema=schema), path)


_TEXT_WRITERS: dict[str, Callable[..., None]] = {
    ".csv": partial(_write_delimited, delimiter=","),
    ".tsv": partial(_write_delimited, delimiter="\t"),
    ".jsonl": _write_jsonl,
    ".json": _write_json,
}
