"""Fine-tuning me5-small (multilingual-e5-small, 250k-row vocabulary) on a CPU: full vs frozen input
embeddings (`train.freeze_embeddings=true`) vs a trimmed vocabulary (`lmforge trim-vocab` on the
training texts).

Each variant is one `lmforge finetune` run of --steps optimizer steps (batch 32 zh reviews, max
length 128, the loop's own precision choice) in its own process, so its peak RSS is its own.
Seconds per step is the median over the steps after the first two (from train_log.jsonl, logged
every step). With --test, the best checkpoint is scored on the whole zh sentiment test split
(macro-F1); otherwise on a 64-row slice, and the F1 column is not meaningful.

Usage: python bench/me5_step.py [--steps 12] [--test]
(needs assets/me5-small from `make install` and data/zh_sentiment from examples/prepare_zh_sentiment.py)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from variants import in_own_process, report

from lmforge.runtime.device import describe_box

ROOT = Path(__file__).resolve().parents[1]
ME5 = ROOT / "assets/me5-small"
DATA = ROOT / "data/zh_sentiment"
VARIANTS = {"full": [], "frozen embeddings": ["train.freeze_embeddings=true"], "trimmed vocab": []}


def run_variant(name: str, args: argparse.Namespace, work: Path) -> dict:
    from lmforge import config
    from lmforge.commands import finetune, trim_vocab
    from lmforge.run import read_history

    model = ME5
    if name == "trimmed vocab":
        model = work / "me5-trimmed"
        trim_vocab.run(str(ME5), str(DATA / "train.csv"), str(model), columns="text", overwrite=True)
    test = DATA / "test.csv" if args.test else _slice(DATA / "test.csv", work / "test64.csv", 64)
    cfg = config.load(ROOT / "configs/classify/zh_sentiment.yaml", [
        "model.preset=", "model.tokenizer=", f"model.path={model}", f"data.train={DATA / 'train.csv'}",
        f"data.validation={_slice(DATA / 'test.csv', work / 'val64.csv', 64)}", f"data.test={test}",
        f"train.max_steps={args.steps}", "train.log_every=1", f"train.lr={args.lr}", f"output_dir={work / 'run'}",
        "overwrite=true", *VARIANTS[name]])
    metrics = finetune.run(cfg)
    steps = [r for r in read_history(work / "run/train_log.jsonl") if "samples_per_s" in r]
    return {"variant": name, "s_per_step": statistics.median(cfg.train.batch_size / r["samples_per_s"] for r in steps[2:]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "vocab_rows": json.loads((model / "config.json").read_text())["vocab_size"],
            "macro_f1": metrics["f1_macro"], "accuracy": metrics["accuracy"]}


def _slice(src: Path, dst: Path, rows: int) -> Path:
    """The header and every k-th row: both classes, deterministic."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    step = max(1, (len(lines) - 1) // rows)
    dst.write_text(lines[0] + "".join(lines[1::step][:rows]), encoding="utf-8")
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--test", action="store_true", help="score on the whole test split (slow)")
    args = parser.parse_args()
    if args.variant:
        with tempfile.TemporaryDirectory(prefix="bench-me5-") as work:
            report(run_variant(args.variant, args, Path(work)))
        return
    results = [in_own_process(__file__, name, sys.argv[1:]) for name in VARIANTS]
    print(f"\nbox: {describe_box()}")
    print(f"me5-small fine-tune on zh sentiment, batch 32, max length 128, {args.steps} steps, lr {args.lr}"
          f"{', scored on the full test split' if args.test else ''}\n")
    print("| variant           | embedding rows | s/step | peak RSS MB | macro-F1 | accuracy |")
    print("|-------------------|----------------|--------|-------------|----------|----------|")
    for r in results:
        print(f"| {r['variant']:<17} | {r['vocab_rows']:>14,} | {r['s_per_step']:6.2f} | {r['peak_rss_mb']:11.0f} | "
              f"{r['macro_f1']:8.4f} | {r['accuracy']:8.4f} |")


if __name__ == "__main__":
    main()
