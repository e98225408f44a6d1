"""`lmforge trim-vocab MODEL --data FILE[,FILE...] --out DIR`: a smaller model folder keeping only the
vocabulary some data uses (see `lmforge.models.trim_vocab`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.commands.args import comma_list
from lmforge.data.readers import Row, read_rows
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.trim_vocab import Trimmed, trim_vocab
from lmforge.outputs import Output, check_outputs


def run(model: str, data: str, out: str, min_count: int = 1, columns: str | None = None, chars: bool = True,
        overwrite: bool = False) -> Trimmed:
    """Trim the model folder `model` to the pieces the texts of `data` use and write it to `out`."""
    files = comma_list(data, "--data", "train.csv,test.csv")
    names = None if columns is None else comma_list(columns, "--columns", "text")
    check_outputs([Output(out, "--out", "folder")], [model, *files], overwrite)
    texts = [text for path in files for text in _texts(path, read_rows(path), names)]
    result = trim_vocab(Path(model), texts, Path(out), min_count, chars)
    logger.info(f"kept {result.kept:,} of {result.rows_before:,} embedding rows ({result.from_data:,} used by the "
                f"data); {result.covered:,} of {result.texts:,} texts tokenize as before -> {out}")
    return result


def _texts(path: str, rows: list[Row], columns: list[str] | None) -> list[str]:
    """The named columns' texts, or every string in every row (nested lists and objects too)."""
    if not rows:
        raise LmforgeError(f"{path}: no rows")
    texts: list[str] = []
    for row in rows:
        if columns is None:
            texts.extend(_strings(row.values))
            continue
        for column in columns:
            if column not in row.values:
                raise LmforgeError(f"{row.location}: no column '{column}' (columns: {', '.join(row.values)})")
            if not isinstance(row.values[column], str):
                raise LmforgeError(f"{row.location}: column '{column}' is not text")
            texts.append(row.values[column])
    return texts


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in _strings(item)]
