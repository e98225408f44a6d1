"""Explanations on zh sentiment: per method, AOPC comprehensiveness and sufficiency (each beside a random
ranking's), seconds per text, and integrated gradients on one 128-token text.

Targets (issue 13): the chosen method's comprehensiveness >= 2x random, its sufficiency below random;
a 128-token text explained by integrated gradients in < 1 s on 2 cores (timed at several path
lengths, with the faithfulness each keeps).

Usage (under the bench lock; needs data/zh_sentiment from examples/prepare_zh_sentiment.py and a model
from `lmforge finetune configs/classify/zh_sentiment.yaml`):
    flock /tmp/lmforge-bench.lock .venv/bin/python bench/explain.py [--model runs/zh_sentiment/best]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import time

import numpy as np

from lmforge.explain import METHODS, Budget, Scorer, explain
from lmforge.inference import load
from lmforge.runtime.device import describe_box


def sample(scorer: Scorer, path: str, n: int, budget: Budget) -> list[str]:
    """The first n test texts of 16 to shap_max_tokens tokens: every method (shap too) explains the same texts."""
    with open(path, encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    picked = []
    for text in texts:
        if 16 <= len(scorer.encode([text])[0].content) <= budget.shap_max_tokens:
            picked.append(text)
        if len(picked) == n:
            break
    return picked


def long_text(scorer: Scorer, path: str) -> str:
    """Test texts joined until the model reads a full 128 tokens (special tokens included)."""
    with open(path, encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    joined = ""
    for text in texts:
        joined += text
        if len(scorer.encode([joined])[0].ids) >= 128:
            return joined
    raise SystemExit("the test file is too short for a 128-token text")


def method_row(scorer: Scorer, texts: list[str], name: str, budget: Budget) -> dict[str, float]:
    """Mean faithfulness over `texts`, and seconds per text of the attribution alone (timed in a run
    without the faithfulness scores, which cost ~40 forward passes per text whatever the method)."""
    start = time.perf_counter()
    explain(scorer, texts, name, budget, faithfulness=False)
    seconds = (time.perf_counter() - start) / len(texts)
    explanations, _ = explain(scorer, texts, name, budget)
    faith = [t.faithfulness for e in explanations for t in e.targets if t.faithfulness]
    means = {k.name: float(np.mean([getattr(f, k.name) for f in faith])) for k in dataclasses.fields(faith[0])}
    return {**means, "seconds_per_text": seconds}


def ig_timing(scorer: Scorer, text: str, budget: Budget, repeats: int = 3) -> tuple[float, float]:
    """Median seconds to explain `text` with ig: attribution alone, and with its faithfulness scores."""
    explain(scorer, [text], "ig", budget, faithfulness=False)  # warm-up: first-call kernel and jieba set-up
    times = {}
    for faithfulness in (False, True):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            explain(scorer, [text], "ig", budget, faithfulness=faithfulness)
            runs.append(time.perf_counter() - start)
        times[faithfulness] = statistics.median(runs)
    return times[False], times[True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/zh_sentiment/best")
    parser.add_argument("--data", default="data/zh_sentiment/test.csv")
    parser.add_argument("--texts", type=int, default=40)
    parser.add_argument("--ig-steps", type=int, nargs="+", default=[8, 16, 32], help="ig path points to time")
    args = parser.parse_args()
    loaded = load(args.model)
    scorer = loaded.scorer("explain")
    budget = Budget()
    print(f"box: {describe_box()}")
    print(f"model: {args.model} ({loaded.precision}); budget: {budget}")
    texts = sample(scorer, args.data, args.texts, budget)
    rows = {name: method_row(scorer, texts, name, budget) for name in METHODS}
    print(f"\n{len(texts)} test texts of 16-{budget.shap_max_tokens} tokens; AOPC over ERASER's bins (1, 5, 10, 20, 50%)")
    print("| method | comprehensiveness ↑ | random | ratio | sufficiency ↓ | random | s/text (attribution) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['comprehensiveness']:.3f} | {r['random_comprehensiveness']:.3f} | "
              f"{r['comprehensiveness'] / max(r['random_comprehensiveness'], 1e-9):.1f}x | {r['sufficiency']:.3f} | "
              f"{r['random_sufficiency']:.3f} | {r['seconds_per_text']:.3f} |")
    best = max(rows, key=lambda n: rows[n]["comprehensiveness"] - rows[n]["sufficiency"])
    r = rows[best]
    print(f"\nauto's criterion (comprehensiveness − sufficiency) picks {best}: comprehensiveness "
          f"{r['comprehensiveness'] / max(r['random_comprehensiveness'], 1e-9):.1f}x random (target >= 2x), "
          f"sufficiency {r['sufficiency']:.3f} vs random {r['random_sufficiency']:.3f} (target: below)")
    text = long_text(scorer, args.data)
    print("\nintegrated gradients by path points (Gauss-Legendre), on the same texts and one 128-token text:")
    print("| ig steps | comprehensiveness ↑ | sufficiency ↓ | s/text | 128-token text s | with faithfulness s |")
    print("|---|---|---|---|---|---|")
    for steps in args.ig_steps:
        stepped = dataclasses.replace(budget, ig_steps=steps)
        r = rows["ig"] if steps == budget.ig_steps else method_row(scorer, texts, "ig", stepped)
        alone, with_faith = ig_timing(scorer, text, stepped)
        print(f"| {steps}{' (default)' if steps == budget.ig_steps else ''} | {r['comprehensiveness']:.3f} | "
              f"{r['sufficiency']:.3f} | {r['seconds_per_text']:.3f} | {alone:.2f} | {with_faith:.2f} |")


if __name__ == "__main__":
    main()
