"""`lmforge generate MODEL --input questions.jsonl --output answers.jsonl` and `lmforge chat MODEL`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmforge.atomic import write_text
from lmforge.errors import LmforgeError
from lmforge.inference import load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(model: str, input: str, output: str, precision: str = "auto", batch_size: int = 8,
        template: str | None = None, overwrite: bool = False) -> int:
    """Answer the last user turn of every conversation (or question) in `input`; write JSONL."""
    from lmforge.generation import generate

    check_outputs([Output(output, "--output", "file")], [model, input], overwrite)
    loaded = _generator(model, precision, batch_size, template)
    split = _prompts(loaded, input)

    prompts = [c[:-1] if c[-1]["role"] == "assistant" else c for c in split.conversations]
    answers = generate(loaded.model, loaded.tokenizer, prompts, loaded.cfg.generation, loaded.device,
                       loaded.precision, batch_size=batch_size)
    lines = [json.dumps({"question": p[-1]["content"], "answer": a}, ensure_ascii=False) + "\n"
             for p, a in zip(prompts, answers)]
    write_text(Path(output), "".join(lines))
    logger.info(f"wrote {len(answers)} answers to {output}")
    return len(answers)


def chat(model: str, precision: str = "auto", template: str | None = None) -> None:
    """Interactive multi-turn chat on the terminal, streaming each answer as it is generated."""
    from lmforge.generation import prompt_text, stream

    loaded = _generator(model, precision, 1, template)
    history = loaded.task.read_list([""]).conversations[0][:-1]  # the system prompt, if any
    print("type a message; an empty line or Ctrl-D ends the chat", file=sys.stderr)
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        history.append({"role": "user", "content": text})
        pieces = []
        prompt = prompt_text(loaded.tokenizer, history)
        for piece in stream(loaded.model, loaded.tokenizer, prompt, loaded.cfg.generation, loaded.device, loaded.precision):
            print(piece, end="", flush=True)
            pieces.append(piece)
        print()
        history.append({"role": "assistant", "content": "".join(pieces).strip()})


def merge(model: str, out: str, overwrite: bool = False) -> None:
    """Fold LoRA adapters into the base weights: a plain HF folder servable without peft."""
    from lmforge.models.lora import merge_folder

    check_outputs([Output(out, "--out", "folder")], [model], overwrite)
    merge_folder(Path(model), Path(out))


def _generator(model: str, precision: str, batch_size: int, template: str | None):
    loaded = load(model, precision=precision, batch_size=batch_size, template=template)
    if loaded.task.name != "generation":
        raise LmforgeError(f"{model} is a {loaded.task.name} model; generate/chat need a generation model")
    return loaded


ANSWER_COLUMNS = {"answer", "output", "response", "completion", "messages", "conversations"}
QUESTION_COLUMNS = ("question", "text", "prompt", "instruction", "query")


def _prompts(loaded, path: str):
    """Conversations to answer: a Q&A/conversation file (references ignored) or bare questions."""
    from lmforge.data.source import read_data

    rows = read_data(path, loaded.cfg.data)
    columns = set().union(*(r.values for r in rows[:20])) if rows else set()
    if columns & ANSWER_COLUMNS:
        return loaded.task.read_split(path, rows)
    for column in QUESTION_COLUMNS:
        if rows and all(isinstance(r.values.get(column), str) and r.values[column].strip() for r in rows):
            return loaded.task.read_list([r.values[column] for r in rows])
    raise LmforgeError(f"{path}: expected a non-empty question column ({', '.join(QUESTION_COLUMNS)})")
