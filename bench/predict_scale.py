"""Cost of `lmforge predict` as the input grows: 1k, 10k and 100k texts through the same model.

A `tiny` classifier is trained once on the zh sentiment training rows (one epoch, seconds); the input
files repeat the test reviews to each size. Each size is one `lmforge predict` call in a process of
its own (bench/variants.py), so its peak RSS is its own; seconds cover the whole call (load, read,
predict, write). Linear time shows as a flat ms/text column, flat memory as a flat peak RSS column.

Usage: flock /tmp/lmforge-bench.lock python bench/predict_scale.py [--sizes 1000,10000,100000] [--preset tiny]
(needs data/zh_sentiment from examples/prepare_zh_sentiment.py)
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

from variants import in_own_process, report

from lmforge.runtime.device import describe_box

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data/zh_sentiment"


def train_model(work: Path, preset: str) -> Path:
    from lmforge import config
    from lmforge.commands import finetune

    cfg = config.load(None, [f"data.train={DATA / 'train.csv'}", f"model.preset={preset}",
                             f"model.tokenizer={ROOT / 'assets/bert-chinese-tokenizer'}", "train.epochs=1",
                             "train.batch_size=64", "train.lr=1e-3", f"output_dir={work / 'run'}", "overwrite=true"])
    finetune.run(cfg)
    return work / "run" / "best"


def write_input(path: Path, n: int) -> Path:
    """n rows cycling through the test reviews, each made unique by its row number."""
    with open(DATA / "test.csv", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([f"{i} {texts[i % len(texts)]}"] for i in range(n))
    return path


def run_variant(size: int, args: argparse.Namespace) -> dict:
    from lmforge.commands import predict

    work = Path(args.work)
    start = time.perf_counter()
    rows = predict.run(str(work / "run" / "best"), str(work / f"in_{size}.csv"), str(work / f"out_{size}.jsonl"),
                       overwrite=True)
    seconds = time.perf_counter() - start
    assert rows == size, (rows, size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": str(size), "seconds": seconds, "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    if args.variant:
        report(run_variant(int(args.variant), args))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as work:
        train_model(Path(work), args.preset)
        for size in sizes:
            write_input(Path(work) / f"in_{size}.csv", size)
        own = [a for a in sys.argv[1:] if not a.startswith("--work")]
        results = [in_own_process(__file__, str(size), [*own, "--work", work]) for size in sizes]
    print(f"\nbox: {describe_box()}")
    print(f"lmforge predict, `{args.preset}` zh sentiment classifier, CSV in, JSONL out, default batch and precision\n")
    print("| texts   | seconds | ms / text | peak RSS MB |")
    print("|---------|---------|-----------|-------------|")
    for size, r in zip(sizes, results):
        print(f"| {size:>7,} | {r['seconds']:7.1f} | {1000 * r['seconds'] / size:9.3f} | {r['peak_rss_mb']:11.0f} |")


if __name__ == "__main__":
    main()
