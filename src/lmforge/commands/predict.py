"""`lmforge predict MODEL --input FILE --output FILE`: labels and probabilities (a tagger: entities as
character spans) for every row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lmforge.atomic import write_file
from lmforge.errors import LmforgeError
from lmforge.inference import load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs

OUTPUT_FORMATS = (".jsonl", ".csv")


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
    records = task.predictions(loaded.outputs(split))
    rows = [{"text": t, **r} for t, r in zip(split.texts, records)]
    write_file(out, lambda tmp: _write(tmp, rows, out.suffix))
    logger.info(f"wrote {len(rows)} predictions to {out}")
    return len(rows)


def _write(path: Path, rows: list[dict], suffix: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        if suffix == ".csv":
            _write_csv(f, rows)
        else:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _write_csv(f, rows: list[dict]) -> None:
    if rows and "probs" not in rows[0]:  # a tagger's entities: one JSON column per nested value
        _write_json_columns(f, rows)
        return
    names = list(rows[0]["probs"]) if rows else []
    writer = csv.writer(f)
    writer.writerow(["text", "label", *[f"p_{n}" for n in names]])
    for r in rows:
        label = "|".join(r["label"]) if isinstance(r["label"], list) else r["label"]
        writer.writerow([r["text"], label, *[r["probs"][n] for n in names]])


def _write_json_columns(f, rows: list[dict]) -> None:
    writer = csv.writer(f)
    writer.writerow(list(rows[0]))
    for r in rows:
        writer.writerow([v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in r.values()])
