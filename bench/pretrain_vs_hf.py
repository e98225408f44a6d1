"""lmforge pretraining vs the HF Trainer run_mlm / run_clm recipe: same model, tokenizer, corpus, batch, bf16.

Variants, each in its own process (so peak RSS is its own):
  lmforge-mlm  `lmforge pretrain objective=mlm` (token file, fixed blocks, MLM head at masked positions only)
  hf-mlm       Trainer + DataCollatorForLanguageModeling(mlm_probability=0.15), texts tokenised and grouped
               into blocks as run_mlm.py does (bf16=True)
  lmforge-clm  `lmforge pretrain objective=clm`
  hf-clm       Trainer + DataCollatorForLanguageModeling(mlm=False), run_clm.py grouping (bf16=True)
Both sides train --steps optimizer steps of --batch-size blocks of --max-length positions, without
evaluation. Throughput is positions (block length x blocks) per second from the end of step 1 to the
last step, so start-up is excluded alike. MFU = positions/s x training FLOPs per position / the bf16
matmul peak measured once at the start of this run. The FLOPs per position are the model's (lmforge's
`flops_per_token`: the MLM head counted at the 15% masked positions it needs), the same for both sides.

Usage: python bench/pretrain_vs_hf.py [--steps 60] [--preset mini] [--objectives mlm,clm]
(needs: python examples/prepare_zh_corpus.py; the corpus and tokenizers are built here if missing)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from variants import in_own_process, report

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data/corpus_zh"
TOKENIZERS = {"mlm": (ROOT / "runs/pretrain/tok_zh", "wordpiece"), "clm": (ROOT / "runs/pretrain/tok_zh_bpe", "bpe")}


def prepare() -> None:
    lmforge = [sys.executable, "-m", "lmforge"]
    if not (CORPUS / "docs.jsonl").is_file():
        subprocess.run([*lmforge, "corpus", "build", str(ROOT / "data/raw_zh"), "--out", str(CORPUS),
                        "--dedup", "minhash", "--min-chars", "10"], check=True)
    for folder, kind in TOKENIZERS.values():
        if not (folder / "tokenizer.json").is_file():
            subprocess.run([*lmforge, "tokenizer", "train", str(CORPUS), "--kind", kind, "--vocab-size", "16000",
                            "--out", str(folder)], check=True)


def config(args: argparse.Namespace, objective: str, out: Path):
    from lmforge import config as config_mod

    return config_mod.load(None, [
        "task=pretrain", f"objective={objective}", f"data.train={CORPUS}", "data.validation_fraction=0.02",
        f"model.preset={args.preset}", f"model.tokenizer={TOKENIZERS[objective][0]}",
                                  f"model.max_length={args.max_length}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", "train.lr=1e-3",
                                  "train.warmup_ratio=0.05",
        "train.seed=0", "train.log_every=1", "train.precision=bf16", "pretrain.eval_blocks=8", f"output_dir={out}",
    ])


def run_variant(name: str, args: argparse.Namespace) -> dict:
    tool, objective = name.split("-")
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    cfg = config(args, objective, out)
    if tool == "lmforge":
        from lmforge.commands.pretrain import run

        run(cfg)
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        # per-step windows (log_every=1); drop step 1 as the HF side does
        steps = [r for r in log if "samples_per_s" in r and r["step"] > 1]
        seconds = sum(1 / r["samples_per_s"] * args.batch_size for r in steps)
        timed_steps = len(steps)
    else:
        seconds, timed_steps = _hf(cfg, objective, out)
    return {"variant": name, "positions_per_s": timed_steps * args.batch_size * args.max_length / seconds,
            "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "flops_per_position": _flops(cfg)}


def _flops(cfg) -> float:
    from lmforge.tasks import build_task

    task = build_task("pretrain", cfg)
    model, tok = task.build_model(None)
    return task.flops_per_token(model)


def _hf(cfg, objective: str, out: Path) -> tuple[float, int]:
    """The run_mlm.py / run_clm.py recipe; returns (seconds from end of step 1 to the end, steps timed)."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    from lmforge.data.corpus import load_texts
    from lmforge.tasks import build_task

    task = build_task("pretrain", cfg)
    model, tok = task.build_model(None)
    texts = load_texts(str(CORPUS))
    size = cfg.model.max_length

    def group(batch: dict) -> dict:  # run_mlm.py / run_clm.py group_texts
        ids = sum(batch["input_ids"], [])
        n = len(ids) // size * size
        return {"input_ids": [ids[i:i + size] for i in range(0, n, size)]}

    add_special = objective == "mlm"  # run_mlm tokenises with [CLS]/[SEP]; run_clm's BPE adds none
    data = Dataset.from_dict({"text": texts}).map(
        lambda b: {"input_ids": tok(b["text"], add_special_tokens=add_special)["input_ids"]}, batched=True,
        remove_columns=["text"]).map(group, batched=True)
    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.setdefault("first", time.perf_counter())
            marks["last"] = time.perf_counter()

    targs = TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=cfg.train.max_steps, learning_rate=cfg.train.lr,
        per_device_train_batch_size=cfg.train.batch_size, seed=0,
        warmup_steps=max(1, int(cfg.train.warmup_ratio * cfg.train.max_steps)),
        eval_strategy="no", save_strategy="no", report_to=[], bf16=True, disable_tqdm=True, logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
    )
    collator = DataCollatorForLanguageModeling(tok, mlm=objective == "mlm", mlm_probability=0.15)
    Trainer(model=model, args=targs, train_dataset=data, data_collator=collator, callbacks=[Clock()]).train()
    return marks["last"] - marks["first"], cfg.train.max_steps - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--objectives", default="mlm,clm")
    args = parser.parse_args()
    if args.variant:
        from lmforge import log

        log.setup()
        report(run_variant(args.variant, args))
        return
    prepare()
    import torch

    from lmforge.runtime.device import pick_device
    from lmforge.train.mfu import _measure

    peak = _measure(pick_device(), torch.bfloat16, seconds=3.0)
    results = []
    for objective in args.objectives.split(","):
        for tool in ("lmforge", "hf"):
            name = f"{tool}-{objective}"
            results.append(in_own_process(__file__, name, sys.argv[1:]))
    _print_table(results, args, peak)


def _print_table(results: list[dict], args: argparse.Namespace, peak: float) -> None:
    from lmforge.runtime.device import describe_box

    print(f"\nbox: {describe_box()}")
    print(f"pretraining on data/corpus_zh, preset {args.preset}, {args.steps} steps of {args.batch_size} x "
          f"{args.max_length} positions, bf16; measured bf16 matmul peak {peak / 1e12:.2f} TFLOP/s\n")
    print("| variant     | positions/s | MFU    | timed s | peak RSS MB | vs HF |")
    print("|-------------|-------------|--------|---------|-------------|-------|")
    rate = {r["variant"]: r["positions_per_s"] for r in results}
    for r in results:
        mfu = r["positions_per_s"] * r["flops_per_position"] / peak
        hf = rate.get("hf-" + r["variant"].split("-")[1])
        print(f"| {r['variant']:<11} | {r['positions_per_s']:11.0f} | {mfu:6.1%} | {r['seconds']:7.1f} | "
              f"{r['peak_rss_mb']:11.0f} | {r['positions_per_s'] / hf:.2f}x |")


if __name__ == "__main__":
    main()
