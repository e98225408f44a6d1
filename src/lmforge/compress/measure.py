"""Side-by-side cost and quality of classifier folders: size, parameters, latency, throughput, accuracy.

Every model is measured the same way on this machine: latency is the median wall time of one
`predict([text])` (tokenizing included) over the first texts of the file; throughput is texts per
second of the scoring pass over the whole file in batches of 32, whose predictions also give
accuracy and macro-F1 through the task's own metrics.
"""

from __future__ import annotations

import html
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

THROUGHPUT_BATCH = 32
COLUMNS = [("name", "model", "{}"), ("size_mb", "size MB", "{:.1f}"), ("parameters", "parameters", "{:,}"),
           ("precision", "runs as", "{}"), ("latency_ms", "latency b=1 ms", "{:.1f}"),
           ("throughput", f"texts/s b={THROUGHPUT_BATCH}", "{:.1f}"), ("speedup", "speed-up", "{:.2f}x"),
           ("accuracy", "accuracy", "{:.4f}"), ("f1_macro", "macro-F1", "{:.4f}")]


@dataclass
class Row:
    """One model's measurements; `speedup` is its throughput over the first row's."""

    name: str
    path: str
    size_mb: float
    parameters: int
    precision: str
    latency_ms: float
    throughput: float
    accuracy: float
    f1_macro: float
    speedup: float = 1.0


def median_latency_ms(predict: Callable[[list[str]], Any], texts: list[str], warmup: int = 3) -> float:
    """Median milliseconds of predict([text]) over `texts`, after `warmup` untimed calls."""
    for text in texts[:warmup]:
        predict([text])
    times = []
    for text in texts:
        start = time.perf_counter()
        predict([text])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    """run()'s result and its wall time in seconds."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def parameters(path: str, model: torch.nn.Module) -> int:
    """The model's parameter count; for an int8 folder, the original's (its int8 layers are packed)."""
    from lmforge.models.int8 import read_spec

    spec = read_spec(Path(path))
    return spec["parameters"] if spec else sum(p.numel() for p in model.parameters())


def measure(path: str, data: str, precision: str = "fp32", latency_texts: int = 50, name: str | None = None) -> Row:
    """Load the classifier folder `path` and measure it on the labelled file `data`."""
    from lmforge.compress.quantize import weights_mb
    from lmforge.inference import load

    loaded = load(path, precision=precision, batch_size=THROUGHPUT_BATCH)
    task = loaded.classifier("be measured by compare (it measures sequence classifiers)")
    split = loaded.task.read_split(data)
    loaded.predict(split.texts[:THROUGHPUT_BATCH])  # warm up kernels and allocator at batch size
    outputs, seconds = timed(lambda: loaded.outputs(split))
    metrics = task.metrics(outputs, task.targets(split))
    latency = median_latency_ms(loaded.predict, task.texts(split)[:latency_texts])
    return Row(name or Path(path).name, str(path), weights_mb(Path(path)), parameters(path, loaded.model), loaded.precision,
               latency, len(split.texts) / seconds, metrics["accuracy"], metrics["f1_macro"])


def with_speedups(rows: list[Row]) -> list[Row]:
    """Each row's throughput relative to the first (the reference model)."""
    for row in rows:
        row.speedup = row.throughput / rows[0].throughput
    return rows


def table(rows: list[Row]) -> str:
    """A plain-text table, one line per model, columns aligned."""
    cells = [[header for _, header, _ in COLUMNS]] + [[fmt.format(getattr(r, key)) for key, _, fmt in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)


def html_table(rows: list[Row], title: str) -> str:
    """A small static HTML page with the same table (no scripts, no external files)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td title='{html.escape(r.path)}'>{html.escape(fmt.format(getattr(r, k)))}</td>"
                                    for k, _, fmt in COLUMNS) + "</tr>\n" for r in rows)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<table><tr>{head}</tr>\n{body}</table><p>speed-up: throughput over the first row's; "
            f"latency: median of single-text predictions; sizes: weight files only.</p></body></html>\n")
