"""The demo's result table: zh sentiment test accuracy, macro-F1 and fine-tuning minutes of
multilingual-e5-small fine-tuned (the default), the `mini` encoder pretrained by the demo and
fine-tuned, the same preset from random weights (same tokenizer and recipe), and the TF-IDF bars.

Reads what `make demo` wrote (metrics.json, train_log.jsonl); prints the table whatever the numbers are.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score

from lmforge.evaluate.baseline import classical_predictions
from lmforge.runtime.device import describe_box

RUNS = {"multilingual-e5-small, fine-tuned (default config)": "runs/zh_sentiment",
        "mini, pretrained by the demo + fine-tuned": "runs/zh_sentiment_pretrained",
        "mini, random init + fine-tuned": "runs/zh_sentiment_random"}
DATA = Path("data/zh_sentiment")


def minutes(run: Path) -> float:
    """Training minutes of a run: the last logged elapsed time."""
    lines = (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1]).get("elapsed_s", float("nan")) / 60


def read(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main() -> None:
    print(f"box: {describe_box()}")
    pretrain = json.loads(Path("runs/pretrain/zh_bert_mini/metrics.json").read_text())
    print(f"pretraining: {pretrain['tokens_trained']:,} tokens in {pretrain['steps']} steps ({pretrain['stopped']}), "
          f"validation perplexity {pretrain['perplexity']:.1f}, {pretrain['tokens_per_s']:.0f} tokens/s\n")
    print("| model (zh sentiment test set) | accuracy | macro-F1 | minutes |\n|---|---|---|---|")
    for name, folder in RUNS.items():
        run = Path(folder)
        if not (run / "metrics.json").is_file():
            print(f"| {name} | not run | | |")
            continue
        m = json.loads((run / "metrics.json").read_text())
        flag = " (COLLAPSED)" if m.get("warnings") else ""
        print(f"| {name}{flag} | {m['accuracy']:.4f} | {m['f1_macro']:.4f} | {minutes(run):.1f} |")
    (train_texts, train_labels), (texts, labels) = read(DATA / "train.csv"), read(DATA / "test.csv")
    for name, (predicted, seconds) in classical_predictions(train_texts, train_labels, texts).items():
        print(f"| {name} | {accuracy_score(labels, predicted):.4f} | "
              f"{f1_score(labels, predicted, average='macro'):.4f} | {seconds / 60:.1f} |")


if __name__ == "__main__":
    main()
