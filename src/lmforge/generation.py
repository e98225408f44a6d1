"""Prompts and decoding for causal LMs: chat templates, batched generation, streaming.

The prompt format is the model's own chat template when it has one, else a named built-in
template (src/lmforge/templates/*.jinja) that is then saved with the tokenizer, so training,
`generate`, `chat` and `serve` all format prompts identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from lmforge.config import GenerationConfig
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.train.device import autocast

TEMPLATES = Path(__file__).with_name("templates")


def ensure_template(tokenizer: Any, name: str) -> None:
    """Give the tokenizer a chat template: its own if it has one, else the built-in `name`."""
    if tokenizer.chat_template:
        return
    path = TEMPLATES / f"{name}.jinja"
    if not path.is_file():
        names = ", ".join(p.stem for p in TEMPLATES.glob("*.jinja"))
        raise LmforgeError(f"unknown generation.template '{name}' (built-in: {names})")
    tokenizer.chat_template = path.read_text(encoding="utf-8")
    logger.info(f"the model has no chat template: using the built-in '{name}' template (saved with the model)")


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text the model sees before it answers the last user message."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus the template's end-of-turn tokens (e.g. <|im_end|>), so answers end where training ended them."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(tid)
    return sorted(ids)


def decoding_kwargs(tokenizer: Any, cfg: GenerationConfig) -> dict[str, Any]:
    """model.generate keyword arguments for this config."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample,
        "repetition_penalty": cfg.repetition_penalty, "eos_token_id": stop_token_ids(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
    }
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or None)
    else:  # greedy: unset the checkpoint's sampling defaults so transformers does not warn about them
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if cfg.stop:
        kwargs.update(stop_strings=list(cfg.stop), tokenizer=tokenizer)
    return kwargs


@torch.no_grad()
def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
             device: torch.device, precision: str, batch_size: int = 8) -> list[str]:
    """Answers to the last user turn of each conversation; batched with left padding, sorted by length."""
    prompts = [prompt_text(tokenizer, c) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens must follow every prompt directly
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            enc = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with autocast(precision, device, model):
                out = model.generate(**enc, **decoding_kwargs(tokenizer, cfg))
            for i, row in zip(chunk, out[:, enc["input_ids"].shape[1]:]):
                answers[i] = _clean(tokenizer.decode(row, skip_special_tokens=True), cfg.stop)
    finally:
        tokenizer.padding_side = side
    return answers


def stream(model: Any, tokenizer: Any, messages: list[dict[str, str]], cfg: GenerationConfig,
           device: torch.device, precision: str) -> Iterator[str]:
    """Yield the answer's text piece by piece as it is generated (for `chat` and SSE)."""
    from threading import Thread

    from transformers import TextIteratorStreamer

    enc = tokenizer([prompt_text(tokenizer, messages)], return_tensors="pt", add_special_tokens=False).to(device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

    def work() -> None:
        with torch.no_grad(), autocast(precision, device, model):
            model.generate(**enc, **decoding_kwargs(tokenizer, cfg), streamer=streamer)

    thread = Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()


def _clean(text: str, stops: list[str]) -> str:
    """Cut at the first stop string (generate keeps the matched stop text) and trim whitespace."""
    for stop in stops:
        if stop in text:
            text = text[: text.index(stop)]
    return text.strip()
