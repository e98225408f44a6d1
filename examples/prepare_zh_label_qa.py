"""A small question -> label generation set from the zh sentiment reviews, for trying the LoRA
defaults of a generative model on data nobody here tuned to (README "Defaults that train").

Each row asks "这条评论是正面还是负面？<review>" and answers 正面 or 负面: 300 balanced training rows
and 200 test rows, reviews of at most 80 characters, drawn with seed 0 from
data/zh_sentiment/{train,test}.csv (run examples/prepare_zh_sentiment.py first). Writes
data/zh_label_qa/{train,test}.jsonl with `question` / `answer` fields.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

ANSWER = {"pos": "正面", "neg": "负面"}


def balanced(rows: list[dict[str, str]], n: int, rng: random.Random) -> list[dict[str, str]]:
    short = [r for r in rows if len(r["text"]) <= 80]
    picked = []
    for label in ANSWER:
        pool = [r for r in short if r["label"] == label]
        rng.shuffle(pool)
        picked += pool[: n // 2]
    rng.shuffle(picked)
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="data/zh_sentiment", help="folder with train.csv and test.csv")
    parser.add_argument("--out", default="data/zh_label_qa", help="folder for train.jsonl and test.jsonl")
    args = parser.parse_args()
    rng, out = random.Random(0), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", 300), ("test", 200)):
        with (Path(args.source) / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            rows = balanced(list(csv.DictReader(f)), n, rng)
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"question": f"这条评论是正面还是负面？{r['text']}", "answer": ANSWER[r["label"]]},
                                   ensure_ascii=False) + "\n")
        print(f"{out / name}.jsonl: {len(rows)} rows")


if __name__ == "__main__":
    main()
