"""lmforge's loop vs the HF Trainer on the same model, data, epochs, seed and max length.

Variants, each in its own process (so peak RSS is its own):
  lmforge          `fit` with defaults (bf16 autocast on AMX, length-grouped dynamic padding)
  trainer-default  HF Trainer, TrainingArguments defaults (fp32), dynamic padding collator
  trainer-best     HF Trainer with its best CPU settings: bf16=True, group_by_length (v5: train_sampling_strategy)
Every variant evaluates and saves once per epoch, so they do the same work. Training wall time
covers the whole train call; validation accuracy is computed the same way for all (fp32 forward).

Usage: python bench/finetune_vs_trainer.py [--train-rows 4000] [--epochs 1] [--preset mini]
(needs the demo data: python examples/prepare_zh_sentiment.py)
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from variants import in_own_process, report

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("lmforge", "trainer-default", "trainer-best")


def common_config(args: argparse.Namespace, out: Path):
    from lmforge import config

    train = _subset(ROOT / "data/zh_sentiment/train.csv", out / "train.csv", args.train_rows)
    val = _subset(ROOT / "data/zh_sentiment/test.csv", out / "val.csv", args.val_rows)
    return config.load(None, [
        f"data.train={train}", f"data.validation={val}", f"model.preset={args.preset}",
        f"model.tokenizer={ROOT / 'assets/bert-chinese-tokenizer'}", f"model.max_length={args.max_length}",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
        "train.seed=0", "train.warmup_ratio=0.1", f"output_dir={out / 'run'}", "train.log_every=1000",
    ])


def _subset(src: Path, dst: Path, rows: int) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    import random

    body = lines[1:]
    random.Random(0).shuffle(body)
    dst.write_text(lines[0] + "".join(body[:rows]), encoding="utf-8")
    return dst


def run_variant(name: str, args: argparse.Namespace) -> dict:
    from lmforge.run import fit_prepared, prepare
    from lmforge.runtime.device import pick_device
    from lmforge.runtime.forward import run_forward

    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    cfg = common_config(args, out)
    prepared = prepare(cfg)
    task, data, model, tok = prepared.task, prepared.data, prepared.model, prepared.tokenizer
    train, val = prepared.train, prepared.validation
    start = time.perf_counter()
    if name == "lmforge":
        fit_prepared(prepared)
    else:
        _trainer(name, cfg, model, tok, train, val, out)
    seconds = time.perf_counter() - start
    probs = run_forward(task, model, val, 64, pick_device(), "fp32")["probs"]
    accuracy = float((probs.argmax(-1) == task.targets(data.validation)).mean())
    return {"variant": name, "samples_per_s": len(train) * cfg.train.epochs / seconds, "seconds": seconds,
            "accuracy": accuracy, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _trainer(name: str, cfg, model, tok, train, val, out: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    def rows(feats):
        return Dataset.from_list([{"input_ids": f["input_ids"], "labels": int(f["labels"])} for f in feats])
    best = name == "trainer-best"
    # transformers 5 spells the old group_by_length=True as train_sampling_strategy="group_by_length"
    sampling = {"train_sampling_strategy": "group_by_length"} if best else {}
    targs = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=cfg.train.epochs, learning_rate=cfg.train.lr,
        per_device_train_batch_size=cfg.train.batch_size, per_device_eval_batch_size=cfg.train.batch_size * 2,
        warmup_steps=int(0.1 * len(train) / cfg.train.batch_size * cfg.train.epochs), weight_decay=cfg.train.weight_decay,
        seed=cfg.train.seed, eval_strategy="epoch", save_strategy="epoch", report_to=[],
        bf16=best, disable_tqdm=True, logging_strategy="no",
        use_cpu=not torch.cuda.is_available(), **sampling,
    )
    Trainer(model=model, args=targs, train_dataset=rows(train), eval_dataset=rows(val),
            data_collator=DataCollatorWithPadding(tok)).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--val-rows", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    if args.variant:
        from lmforge import log

        log.setup()
        report(run_variant(args.variant, args))
        return
    results = [in_own_process(__file__, name, sys.argv[1:]) for name in VARIANTS]
    _print_table(results, args)


def _print_table(results: list[dict], args: argparse.Namespace) -> None:
    print(f"\nzh sentiment, preset {args.preset}, {args.train_rows} train rows, {args.epochs} epoch(s), "
          f"batch {args.batch_size}, max_length {args.max_length}\n")
    print(f"| {'variant':<16} | samples/s | wall s | val acc | peak RSS MB | speed-up vs variant |")
    print(f"|{'-' * 18}|-----------|--------|---------|-------------|---------------------|")
    base = {r["variant"]: r["samples_per_s"] for r in results}
    for r in results:
        ratio = " / ".join(f"{r['samples_per_s'] / base[v]:.2f}x {v}" for v in VARIANTS[1:] if v != r["variant"])
        print(f"| {r['variant']:<16} | {r['samples_per_s']:9.1f} | {r['seconds']:6.1f} | {r['accuracy']:7.4f} | "
              f"{r['peak_rss_mb']:11.0f} | {ratio} |")


if __name__ == "__main__":
    main()
