"""`lmforge generate MODEL --input questions.jsonl --output answers.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.atomic import write_text
from lmforge.decoding import generate
from lmforge.inference import load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(model: str, input: str, output: str, precision: str = "auto", batch_size: int = 8,
        template: str | None = None, overwrite: bool = False) -> int:
    """Answer the last user turn of every conversation (or question) in `input`; write JSONL."""
    check_outputs([Output(output, "--output", "file")], [model, input], overwrite)
    loaded = load(model, precision=precision, batch_size=batch_size, template=template)
    prompts = loaded.generator("answer questions (use `lmforge predict` for other models)").read_prompts(input)
    answers = generate(loaded.model, loaded.tokenizer, prompts, loaded.cfg.generation, loaded.device,
                       loaded.precision, batch_size=batch_size)
    lines = [json.dumps({"question": p[-1]["content"], "answer": a}, ensure_ascii=False) + "\n"
             for p, a in zip(prompts, answers)]
    write_text(Path(output), "".join(lines))
    logger.info(f"wrote {len(answers)} answers to {output}")
    return len(answers)
