"""`lmforge predict MODEL --input FILE --output FILE`: labels and probabilities (a tagger: entities as
character spans) for every row.

The input is validated whole before anything is written; then it is encoded, run and written a part
of PART rows at a time, so memory stays flat as the file grows (encodings of every row at once cost
kilobytes per text) and each part's batches are still sorted by length to save padding."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any, Iterator, TextIO

from lmforge.atomic import write_file
from lmforge.errors import LmforgeError
from lmforge.inference import Loaded, load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.tasks.contracts import Predicts

OUTPUT_FORMATS = (".jsonl", ".csv")
PART = 4096  # rows encoded, run and written together


def run(model: str, input: str, output: str, precision: str = "auto", batch_size: int = 64,
        overwrite: bool = False) -> int:
    """Predict every row of `input`; write .jsonl (or .csv) to `output`. Returns the row count."""
    out = Path(output)
    if out.suffix not in OUTPUT_FORMATS:
        raise LmforgeError(f"--output must end in {' or '.join(OUTPUT_FORMATS)}: {output}")
    check_outputs([Output(output, "--output", "file")], [model, input], overwrite)
    loaded = load(model, precision=precision, batch_size=batch_size)
    task = loaded.predictor("label texts (for a generation model use `lmforge generate` or `lmforge chat`)")
    split = task.read_texts(input)  # validated before any output is written
    written: list[int] = []
    write_file(out, lambda tmp: written.append(_write(tmp, _rows(loaded, task, split), out.suffix)))
    logger.info(f"wrote {written[0]} predictions to {out}")
    return written[0]


def _rows(loaded: Loaded, task: Predicts[Any], split: Any) -> Iterator[dict[str, Any]]:
    for part in task.parts(split, PART):
        yield from ({"text": t, **r} for t, r in zip(part.texts, task.predictions(loaded.outputs(part))))


def _write(path: Path, rows: Iterator[dict[str, Any]], suffix: str) -> int:
    with open(path, "w", encoding="utf-8", newline="") as f:
        if suffix == ".csv":
            return _write_csv(f, rows)
        count = 0
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        return count


def _write_csv(f: TextIO, rows: Iterator[dict[str, Any]]) -> int:
    """text, label and one p_<class> column per class (a tagger: one JSON column per nested value);
    the header comes from the first row."""
    writer = csv.writer(f)
    first = next(rows, None)
    if first is None:
        writer.writerow(["text", "label"])
        return 0
    tagger = "probs" not in first
    names = list(first) if tagger else list(first["probs"])
    writer.writerow(names if tagger else ["text", "label", *[f"p_{n}" for n in names]])
    count = 0
    for row in itertools.chain([first], rows):
        writer.writerow(_json_cells(row) if tagger else _label_cells(row, names))
        count += 1
    return count


def _json_cells(row: dict[str, Any]) -> list[str]:
    return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in row.values()]


def _label_cells(row: dict[str, Any], names: list[str]) -> list[Any]:
    label = "|".join(row["label"]) if isinstance(row["label"], list) else row["label"]
    return [row["text"], label, *[row["probs"][n] for n in names]]
