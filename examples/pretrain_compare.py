"""The demo's result: zh sentiment after fine-tuning the pretrained `mini` encoder, next to the same
preset from random weights (same tokenizer, same fine-tuning config) and the TF-IDF baseline.

Reads the metrics.json files written by `make demo`; prints one table, whatever the numbers are.
"""

from __future__ import annotations

import json
from pathlib import Path

RUNS = {"mini, pretrained (lmforge pretrain) + fine-tuned": "runs/zh_sentiment_pretrained",
        "mini, random init + fine-tuned": "runs/zh_sentiment_random"}


def main() -> None:
    pretrain = json.loads(Path("runs/pretrain/zh_bert_mini/metrics.json").read_text())
    print(f"pretraining: {pretrain['tokens_trained']:,} tokens in {pretrain['steps']} steps ({pretrain['stopped']}), "
          f"validation perplexity {pretrain['perplexity']:.1f}, {pretrain['tokens_per_s']:.0f} tokens/s, "
          f"MFU {pretrain['mfu']:.1%}\n")
    print("| model (zh sentiment test set) | accuracy | macro-F1 |\n|---|---|---|")
    metrics = {name: json.loads((Path(folder) / "metrics.json").read_text()) for name, folder in RUNS.items()}
    for name, m in metrics.items():
        print(f"| {name} | {m['accuracy']:.4f} | {m['f1_macro']:.4f} |")
    base = next(iter(metrics.values()))["baseline"]
    print(f"| TF-IDF char 1-3-gram + logistic regression | {base['accuracy']:.4f} | {base['f1_macro']:.4f} |")


if __name__ == "__main__":
    main()
