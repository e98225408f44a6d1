"""Prompts and decoding for generation models: chat templates, batched generation, streaming.

`complete` is the one decoding path (batched, with token counts); `generate` formats conversations
for it, `stream` yields one completion piece by piece. Decoders (causal LMs) continue their prompt,
so prompts are left-padded and the answer is what follows them; encoder-decoders (Marian, T5, NLLB)
read the prompt in the encoder, right-padded with the special tokens they were trained with, and
the answer is the decoder's output after its start token.

The prompt format is the model's own chat template when it has one, else a named built-in
template (src/lmforge/templates/*.jinja) that is then saved with the tokenizer, so training,
`generate`, `chat` and `serve` all format prompts identically. An encoder-decoder gets the built-in
`source` template: its encoder reads the prompt text itself, with no turn markers.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from lmforge import greedy
from lmforge.config import GenerationConfig
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.runtime.device import autocast

TEMPLATES = Path(__file__).with_name("templates")
SOURCE_TEMPLATE = "source"  # the built-in template of encoder-decoders
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_seq2seq(model: Any) -> bool:
    """True for an encoder-decoder (peft wrappers forward `config`)."""
    return bool(getattr(model.config, "is_encoder_decoder", False))


def ensure_template(tokenizer: Any, name: str) -> None:
    """Give the tokenizer a chat template: its own if it has one, else the built-in `name`."""
    if tokenizer.chat_template:
        return
    tokenizer.chat_template = template_text(name)
    logger.info(f"the model has no chat template: using the built-in '{name}' template (saved with the model)")


def use_template(tokenizer: Any, requested: str, model: str) -> None:
    """Format prompts with `requested` instead of the template saved with `model`, warning (naming both)
    when they differ: a model answers best in the format it was trained on."""
    text = template_text(requested)
    if text != tokenizer.chat_template:
        logger.warning(f"{model} was saved with {_describe(tokenizer.chat_template)} but is asked to use "
                       f"'{requested}': prompts will not look like the ones it was trained on")
    tokenizer.chat_template = text


def template_text(name: str) -> str:
    """The text of the built-in template `name`, or of a .jinja file."""
    if name.endswith(".jinja"):
        if not Path(name).is_file():
            raise LmforgeError(f"template file not found: {name}")
        return Path(name).read_text(encoding="utf-8")
    path = TEMPLATES / f"{name}.jinja"
    if not path.is_file():
        names = ", ".join(p.stem for p in TEMPLATES.glob("*.jinja"))
        raise LmforgeError(f"unknown generation.template '{name}' (built-in: {names}; or a .jinja file)")
    return path.read_text(encoding="utf-8")


def _describe(saved: str | None) -> str:
    if not saved:
        return "no chat template"
    names = [p.stem for p in TEMPLATES.glob("*.jinja") if p.read_text(encoding="utf-8") == saved]
    return f"the built-in '{names[0]}' template" if names else "its own chat template (tokenizer_config.json)"


def rag_prompt(question: str, passages: list[str]) -> str:
    """One user message for answering from retrieved passages: the numbered passages, then the question."""
    numbered = "\n".join(f"{i}. {passage}" for i, passage in enumerate(passages, start=1))
    return f"参考资料 / Reference:\n{numbered}\n\n问题 / Question: {question}"


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
        "num_beams": 1,  # greedy or sampling as configured, whatever beam width a checkpoint (Marian: 4) saves
    }
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or None)
    else:  # greedy: unset the checkpoint's sampling defaults so transformers does not warn about them
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if cfg.stop:
        kwargs.update(stop_strings=list(cfg.stop), tokenizer=tokenizer)
    return kwargs


@dataclass(frozen=True)
class Completion:
    """One generated answer and what an API reports about it."""

    text: str
    prompt_tokens: int
    completion_tokens: int  # with the EOS/end-of-turn token when generation ended on one
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
             device: torch.device, precision: str, batch_size: int = 8) -> list[str]:
    """Answers to the last user turn of each conversation, formatted with the model's chat template."""
    prompts = [prompt_text(tokenizer, c) for c in conversations]
    return [c.text for c in complete(model, tokenizer, prompts, cfg, device, precision, batch_size)]


@torch.no_grad()
def complete(model: Any, tokenizer: Any, prompts: list[str], cfg: GenerationConfig, device: torch.device,
             precision: str, batch_size: int = 8, strip: bool = True,
             observe: Callable[[greedy.Decoded], None] | None = None) -> list[Completion]:
    """Completions of already-formatted prompts: batched with left padding, longest first.

    The one decoding path behind `generate`, `kb ask` and the server (which also sends raw prompts
    and reports token counts). `strip` trims answers as chat shows them; raw completions keep spaces.
    A lone prompt decoded greedily with `prompt_lookup` or `compile` runs lmforge's own loop
    (`lmforge.greedy`: static cache, compiled step, prompt-lookup drafts; see `own_loop`), everything
    else `model.generate`; `observe` sees each batch the own loop decoded (forwards, accepted drafts).
    """
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    done: list[Completion] = [None] * len(prompts)  # type: ignore[list-item]
    stops = set(stop_token_ids(tokenizer))
    limit = prompt_limit(model, tokenizer, cfg)
    seq2seq = is_seq2seq(model)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        enc = _encode(tokenizer, [prompts[i] for i in chunk], device, limit, chunk, seq2seq)
        with autocast(precision, device, model):
            rows = _decode(model, tokenizer, enc, cfg, stops, seq2seq, observe)
        for i, row, n_prompt in zip(chunk, rows, enc["attention_mask"].sum(1).tolist()):
            done[i] = _completion(tokenizer, row, int(n_prompt), stops, cfg, strip)
    return done


# Settings a checkpoint's generation_config.json may carry that make `generate` change logits or stop
# otherwise than plain greedy decoding; a model with any of them set keeps `generate`.
_LOGITS_SETTINGS = ("suppress_tokens", "begin_suppress_tokens", "bad_words_ids", "forced_bos_token_id",
                    "forced_eos_token_id", "min_new_tokens", "no_repeat_ngram_size", "sequence_bias",
                    "max_time", "stop_strings")


def lean_greedy(model: Any, cfg: GenerationConfig) -> bool:
    """Whether `greedy.decode` can produce what `generate` would: greedy, no repetition penalty, no stop
    strings (generate checks them on decoded text as it goes), a decoder that takes an external cache,
    and no logits settings saved with the checkpoint."""
    if cfg.do_sample or cfg.repetition_penalty != 1.0 or cfg.stop or not greedy.supports(model):
        return False
    saved = model.generation_config
    return not any(getattr(saved, key, None) for key in _LOGITS_SETTINGS) and not saved.min_length


def own_loop(model: Any, cfg: GenerationConfig, rows: int) -> bool:
    """Whether to decode with `greedy.decode`: when it can (`lean_greedy`), a lever is asked for
    (`prompt_lookup`, `compile`) and the batch is one prompt. Plain greedy and batches stay with `generate`:
    in bench/generate_vs_hf.py (SmolLM2-135M, bf16, 2 cores) the own loop without levers ran at 0.96-1.13x
    generate for one prompt and 0.75-0.93x for eight (each step attends over the whole preallocated cache),
    and a batch pays the wide draft-checking step whenever any of its rows drafts."""
    return rows == 1 and bool(cfg.prompt_lookup or cfg.compile) and lean_greedy(model, cfg)


def _plan(cfg: GenerationConfig) -> greedy.Plan:
    return greedy.Plan(draft=cfg.prompt_lookup, compile=cfg.compile)


def _decode(model: Any, tokenizer: Any, enc: Any, cfg: GenerationConfig, stops: set[int], seq2seq: bool,
            observe: Callable[[greedy.Decoded], None] | None) -> list[list[int]]:
    """The generated tokens of each prompt of one batch (a row may run on past its first stop token)."""
    if own_loop(model, cfg, enc["input_ids"].shape[0]):
        decoded = greedy.decode(model, enc["input_ids"], enc["attention_mask"], cfg.max_new_tokens, stops, _plan(cfg))
        if observe:
            observe(decoded)
        return decoded.rows
    out = model.generate(**enc, **decoding_kwargs(tokenizer, cfg))
    # A decoder's output repeats the prompt; an encoder-decoder's starts with the decoder start token.
    return out[:, 1 if seq2seq else enc["input_ids"].shape[1]:].tolist()


def stream(model: Any, tokenizer: Any, prompt: str, cfg: GenerationConfig, device: torch.device, precision: str,
           cancel: threading.Event | None = None, timeout: float | None = None) -> Iterator[str]:
    """Text pieces of the completion of `prompt` as they are generated (for `chat` and SSE), from the
    same loop as `complete` (lmforge's own when `own_loop` says so, else `generate`).

    Setting `cancel`, or closing this iterator, stops generation (a client that left); `timeout`
    bounds the wait for each piece.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    cancel = cancel or threading.Event()

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

    enc = _encode(tokenizer, [prompt], device, prompt_limit(model, tokenizer, cfg), [0], is_seq2seq(model))
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)

    def listen(appended: list[list[int]]) -> bool:
        if appended[0]:
            streamer.put(torch.tensor(appended[0]))
        return cancel.is_set()

    def work() -> None:
        with torch.no_grad(), autocast(precision, device, model):
            if not own_loop(model, cfg, 1):
                model.generate(**enc, **decoding_kwargs(tokenizer, cfg), streamer=streamer,
                               stopping_criteria=StoppingCriteriaList([Cancelled()]))
                return
            streamer.put(enc["input_ids"][0])  # the prompt, which the streamer skips
            try:
                greedy.decode(model, enc["input_ids"], enc["attention_mask"], cfg.max_new_tokens,
                              set(stop_token_ids(tokenizer)), _plan(cfg), listen)
            finally:
                streamer.end()

    threading.Thread(target=work, daemon=True).start()
    try:
        yield from streamer
    finally:
        cancel.set()


def tokenizer_lock(tokenizer: Any) -> threading.Lock:
    """One lock per tokenizer for threads that encode at once (the server's batch worker, streams,
    request handlers): HF fast tokenizers fail ("Already borrowed") when two threads change padding."""
    return _LOCKS.setdefault(tokenizer, threading.Lock())


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop string (generate keeps the matched stop), and whether one matched."""
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def prompt_limit(model: Any, tokenizer: Any, cfg: GenerationConfig) -> int:
    """Most prompt tokens a completion may start from: the model's context minus the tokens it may
    generate (an encoder-decoder's encoder has the whole context to itself). Without a bound, one long
    prompt costs minutes and memory quadratic in its length."""
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not context:  # a model that names no context: the tokenizer's, else a conservative default
        context = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else 2048
    if is_seq2seq(model):
        return int(context)
    if cfg.max_new_tokens >= context:
        raise LmforgeError(f"generation.max_new_tokens={cfg.max_new_tokens} leaves no room for a prompt in the "
                           f"model's context of {context} tokens")
    return context - cfg.max_new_tokens


def _encode(tokenizer: Any, prompts: list[str], device: torch.device, limit: int, numbers: list[int],
            seq2seq: bool = False) -> Any:
    """Ids of `prompts`, with a warning naming (by its number in the caller's input) a prompt longer than
    `limit`. A decoder's prompts are left-padded (new tokens must follow every prompt directly) and keep
    their last `limit` tokens (the question and the answer cue are at the end). An encoder-decoder's
    carry the tokenizer's special tokens (Marian and T5 end a source with </s>), are right-padded (Marian
    counts positions from the first token, padding or not) and keep their first `limit` tokens (the
    instruction is at the start)."""
    with tokenizer_lock(tokenizer):
        rows = tokenizer(prompts, add_special_tokens=seq2seq)["input_ids"]
        kept = "first" if seq2seq else "last"
        for number, row in zip(numbers, rows):
            if len(row) > limit:
                logger.warning(f"prompt {number}: {len(row)} tokens, more than the {limit} the model can read "
                               f"before answering; keeping its {kept} {limit} tokens")
        rows = [row[:limit] if seq2seq else row[-limit:] for row in rows]
        enc = tokenizer.pad({"input_ids": rows}, padding=True, padding_side="right" if seq2seq else "left",
                            return_tensors="pt")
    return enc.to(device)


def _completion(tokenizer: Any, row: list[int], n_prompt: int, stops: set[int], cfg: GenerationConfig,
                strip: bool) -> Completion:
    """One generated row cut at its first end-of-turn token and stop string, with its counts."""
    end = next((i for i, t in enumerate(row) if t in stops), None)
    ids = row if end is None else row[:end]
    with tokenizer_lock(tokenizer):
        text, cut = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), cfg.stop)
    finish = "length" if end is None and not cut and len(row) >= cfg.max_new_tokens else "stop"
    return Completion(text.strip() if strip else text, n_prompt, len(ids) + (end is not None), finish)
