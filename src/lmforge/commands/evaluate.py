"""`lmforge evaluate MODEL --data FILE --out DIR`: metrics.json and report.html for a saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.inference import load
from lmforge.outputs import Output, check_outputs
from lmforge.run import read_history, training_split, write_evaluation


def run(model: str, data: str, out: str, precision: str = "auto", batch_size: int = 64,
        baseline: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Score the model in folder `model` on the labelled file (or, for a pretrained LM, corpus) `data`;
    write results into `out`."""
    check_outputs([Output(out, "--out", "folder")], [model, data], overwrite)
    loaded = load(model, precision=precision, batch_size=batch_size)
    split = loaded.task.read_split(data)
    train = training_split(loaded) if baseline else None
    return write_evaluation(loaded, split, Path(out), train=train, history=_history(Path(model)),
                            title=f"{Path(model).name} on {Path(data).name}")


def _history(model: Path) -> list[dict[str, Any]] | None:
    """The training log of the run that wrote this folder (runs/x/best -> runs/x/train_log.jsonl; a
    distilled or pruned folder keeps its own in <folder>/run, and its parent's log is another model's)."""
    log = next((p for p in (model / "run" / "train_log.jsonl", model.parent / "train_log.jsonl") if p.is_file()), None)
    return read_history(log) if log else None
