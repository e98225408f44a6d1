"""Is the automatic recipe good enough? The default run (no train.* key set) against a small
`lmforge sweep` over learning rate, epochs and batch size, on a small slice of a labelled dataset,
every score on the whole test file.

One slice = a stratified subsample of a training CSV (seed 0) + the model keys. For each slice:
  default   `lmforge finetune` with only the model and data keys: the recipe picks lr, batch, epochs
  sweep     `lmforge sweep` (TPE + median pruning, chosen on the validation split) of --trials trials
Printed per slice: the default's test macro-F1, the sweep-chosen trial's, the best test macro-F1 of
any trial (an oracle no user has: it peeks at the test set), and minutes. Target (issue 12): the
default within 1 point of the best of a 12-trial sweep.

Usage (under the bench lock):
  flock /tmp/lmforge-bench.lock python bench/defaults_vs_sweep.py \\
      --slice "en-tweets-minilm=data/en_tweets/train.csv,data/en_tweets/test.csv,800,model.path=MINILM" \\
      --slice "zh-reviews-mini=data/zh_sentiment/train.csv,data/zh_sentiment/test.csv,800,model.preset=mini \\
               model.tokenizer=assets/bert-chinese-tokenizer" [--trials 12]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from quality import subsample

from lmforge.runtime.device import describe_box

ROOT = Path(__file__).resolve().parents[1]
SPACE = ["train.lr=1e-5..2e-3:log", "train.epochs=2..30", "train.batch_size=8,16,32"]


def lmforge(args: list[str], log: Path) -> None:
    with log.open("w") as f:
        done = subprocess.run([sys.executable, "-m", "lmforge", *args], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        sys.exit(f"lmforge {' '.join(args[:2])} failed: see {log}")


def test_f1(model: Path, test: Path, out: Path) -> float:
    """Macro-F1 of a model folder on the whole test file (`lmforge evaluate`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lmforge(["evaluate", str(model), "--data", str(test), "--out", str(out), "--overwrite"], out.with_suffix(".log"))
    return json.loads((out / "metrics.json").read_text())["f1_macro"]


def run_slice(name: str, spec: str, trials: int, work: Path) -> dict[str, object]:
    train, test, rows, *keys = [part.strip() for part in spec.split(",", 3)]
    keys = shlex.split(keys[0]) if keys else []
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    sliced = subsample(ROOT / train, folder / "train.csv", int(rows))
    base = ["task=classification", f"data.train={sliced}", *keys]
    minutes = folder / "minutes.json"  # a finished stage is kept: running the bench again goes on from there
    spent = json.loads(minutes.read_text()) if minutes.is_file() else {}
    if "default" not in spent:
        started = time.monotonic()
        lmforge(["finetune", *base, f"data.test={ROOT / test}", f"output_dir={folder / 'default'}", "overwrite=true"],
                folder / "default.log")
        spent["default"] = (time.monotonic() - started) / 60
        minutes.write_text(json.dumps(spent))
    auto = next((line.split("auto: ", 1)[1].strip() for line in (folder / "default.log").read_text().splitlines()
                 if "auto: " in line), "")
    default = json.loads((folder / "default" / "metrics.json").read_text())["f1_macro"]
    if "sweep" not in spent:
        started = time.monotonic()
        space = [arg for dim in SPACE for arg in ("--space", dim)]
        lmforge(["sweep", *base, *space, "--trials", str(trials), "--out", str(folder / "sweep"), "--overwrite"],
                folder / "sweep.log")
        spent["sweep"] = (time.monotonic() - started) / 60
        minutes.write_text(json.dumps(spent))
    board = json.loads((folder / "sweep" / "leaderboard.json").read_text())  # best first; pruned trials last
    finished = [f"trial-{row['trial']:03d}" for row in board if row["state"] == "complete"]
    scores = {trial: test_f1(folder / "sweep" / trial / "best", ROOT / test, folder / "eval" / trial)
              for trial in finished}
    return {"slice": name, "rows": int(rows), "default": default, "auto": auto, "default_min": spent["default"],
            "chosen": scores[finished[0]], "chosen_trial": finished[0], "oracle": max(scores.values()),
            "trials": len(board), "completed": len(finished), "sweep_min": spent["sweep"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slice", action="append", required=True, help="NAME=TRAIN,TEST,ROWS,KEYS")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--work", default="runs/bench_defaults")
    args = parser.parse_args()
    print(f"box: {describe_box()}")
    print(f"sweep space: {' '.join(SPACE)}; {args.trials} trials, TPE + median pruning, chosen on validation\n")
    print("| slice | rows | default test F1 | sweep-chosen test F1 | best trial test F1 (oracle) | default - oracle "
          "| default min | sweep min | recipe chosen |\n|---|---|---|---|---|---|---|---|---|")
    for item in args.slice:
        name, _, spec = item.partition("=")
        r = run_slice(name, spec, args.trials, ROOT / args.work)
        print(f"| {r['slice']} | {r['rows']} | {r['default']:.4f} | {r['chosen']:.4f} ({r['chosen_trial']}) | "
              f"{r['oracle']:.4f} | {100 * (r['default'] - r['oracle']):+.1f} pts | {r['default_min']:.1f} | "
              f"{r['sweep_min']:.1f} ({r['completed']}/{r['trials']} trials completed, rest pruned) | {r['auto']} |",
              flush=True)


if __name__ == "__main__":
    main()
