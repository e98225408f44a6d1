"""`lmforge chat MODEL`: multi-turn chat on the terminal, streaming each answer."""

from __future__ import annotations

import sys

from lmforge.decoding import prompt_text, stream
from lmforge.inference import load


def run(model: str, precision: str = "auto", template: str | None = None) -> None:
    """Chat until an empty line or end of input; the model's system prompt (if any) opens the history."""
    loaded = load(model, precision=precision, batch_size=1, template=template)
    history = loaded.generator("chat").conversations([""])[0][:-1]
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
        for piece in stream(loaded.model, loaded.tokenizer, prompt, loaded.cfg.generation, loaded.device,
                            loaded.precision):
            print(piece, end="", flush=True)
            pieces.append(piece)
        print()
        history.append({"role": "assistant", "content": "".join(pieces).strip()})
