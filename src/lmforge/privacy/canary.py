"""Secret canaries for the exposure audit (Carlini et al., "The Secret Sharer").

A canary is a sentence with a random secret, e.g. "我的密码是 493021", planted `repeat` times in
a training file as the answer to a fixed prompt. After training, `lmforge audit --canaries`
ranks each true secret against other candidates of the same shape by the model's likelihood.
The secrets are drawn uniformly at random so that, without memorisation, the true one is no
more likely than any candidate; the canaries file records them and must stay with the auditor.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.atomic import write_file, write_text
from lmforge.data.conversations import detect_format, qa_columns
from lmforge.data.readers import read_rows
from lmforge.data.writers import writer_for
from lmforge.errors import LmforgeError

DEFAULT_TEMPLATE = "我的密码是 {secret}"
DEFAULT_PROMPT = "请记住这句话。"


@dataclass
class Canaries:
    """Planted secrets and how they were planted; saved as JSON beside the canaried file."""

    template: str  # the canary sentence; {secret} marks the digits
    prompt: str  # the user turn each canary answers
    digits: int  # secrets are `digits` random decimal digits: |R| = 10**digits
    repeat: int  # copies of each canary in the training file
    secrets: list[str]

    @property
    def space_size(self) -> int:
        return 10**self.digits

    def text(self, secret: str) -> str:
        return self.template.format(secret=secret)

    def conversation(self, secret: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.text(secret)}]

    def candidates(self, secret: str, count: int, seed: int) -> list[str]:
        """`count` other secrets drawn without replacement, or every other secret when the space is
        no larger than that (then exposure is exact, not a sampling estimate)."""
        others = self.space_size - 1
        rng = np.random.default_rng(seed)
        drawn = np.arange(self.space_size) if count >= others else rng.choice(self.space_size, count + 1, replace=False)
        picked = [s for s in (f"{n:0{self.digits}d}" for n in drawn) if s != secret]
        return picked[: min(count, others)]

    def save(self, path: Path) -> None:
        write_text(path, json.dumps(asdict(self), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: Path) -> "Canaries":
        try:
            return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise LmforgeError(f"{path}: not a canaries file written by `lmforge canary` ({exc})") from None


def make_canaries(count: int, repeat: int, digits: int = 6, template: str = DEFAULT_TEMPLATE,
                  prompt: str = DEFAULT_PROMPT, seed: int = 0) -> Canaries:
    """`count` distinct random secrets of `digits` digits (SystemRandom unless a seed is given)."""
    if count < 1 or repeat < 1 or not 1 <= digits <= 12:
        raise LmforgeError("canaries: count and repeat must be >= 1 and digits between 1 and 12")
    if "{secret}" not in template:
        raise LmforgeError(f"canary template {template!r} has no {{secret}} placeholder")
    if count > 10**digits:
        raise LmforgeError(f"cannot draw {count} distinct {digits}-digit secrets")
    rng = random.Random(seed) if seed else random.SystemRandom()
    secrets = [f"{n:0{digits}d}" for n in rng.sample(range(10**digits), count)]
    return Canaries(template, prompt, digits, repeat, secrets)


def insert_canaries(src: Path, dst: Path, canaries: Canaries, encoding: str = "utf-8", seed: int = 0) -> int:
    """Copy the conversation file `src` to `dst` with every canary added `repeat` times at random
    places, in `src`'s format; returns the number of rows written."""
    rows = read_rows(src, encoding)
    write = writer_for(src, dst, encoding)
    records = [row.values for row in rows]
    fmt = detect_format(rows)
    planted = [_record(rows, fmt, canaries.conversation(s)) for s in canaries.secrets for _ in range(canaries.repeat)]
    rng = random.Random(seed)
    for record in planted:  # random positions: a block at the end would be trained on last
        records.insert(rng.randint(0, len(records)), record)
    write_file(dst, lambda tmp: write(tmp, records))
    return len(records)


def _record(rows: list[Any], fmt: str, conversation: list[dict[str, str]]) -> dict[str, Any]:
    """One row in the file's conversation format `fmt` (see `detect_format`)."""
    user, assistant = conversation[0]["content"], conversation[1]["content"]
    if fmt == "messages":
        return {"messages": conversation}
    if fmt == "sharegpt":
        return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": assistant}]}
    if fmt == "alpaca":
        return {"instruction": user, "input": "", "output": assistant}
    question, answer = qa_columns(rows, "", "")
    return {question: user, answer: assistant}
