"""`lmforge predict MODEL --input FILE --output FILE`: labels and probabilities for every row."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.inference import load
from lmforge.log import logger

OUTPUT_FORMATS = (".jsonl", ".csv")


def run(model: str, input: str, output: str, precision: str = "auto", batch_size: int = 64) -> int:
    """Predict every row of `input`; write .jsonl (or .csv) to `output`. Returns the row count."""
    out = Path(output)
    if out.suffix not in OUTPUT_FORMATS:
        raise LmforgeError(f"--output must end in {' or '.join(OUTPUT_FORMATS)}: {output}")
    loaded = load(model, precision=precision, batch_size=batch_size)
    if loaded.task.name == "generation":
        raise LmforgeError(f"{model} is a generation model: use `lmforge generate` (or `lmforge chat`)")
    split = loaded.task.read_texts(input)  # validated before any output is written
    records = loaded.task.predictions(loaded.outputs(split))
    rows = [{"text": t, **r} for t, r in zip(split.texts, records)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        _write_csv(f, rows) if out.suffix == ".csv" else f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, out)
    logger.info(f"wrote {len(rows)} predictions to {out}")
    return len(rows)


def _write_csv(f, rows: list[dict]) -> None:
    names = list(rows[0]["probs"]) if rows else []
    writer = csv.writer(f)
    writer.writerow(["text", "label", *[f"p_{n}" for n in names]])
    for r in rows:
        label = "|".join(r["label"]) if isinstance(r["label"], list) else r["label"]
        writer.writerow([r["text"], label, *[r["probs"][n] for n in names]])
