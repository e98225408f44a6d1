"""The model side of the server: classify texts, complete prompts (batched), stream one prompt.

Unlike `lmforge.generation.generate`, these take already-formatted prompt texts (so /v1/completions
can send raw text, and chat formats with the saved template via `prompt_text`) and report token
counts for `usage`. A lock guards the tokenizer: HF fast tokenizers fail ("Already borrowed") when
two threads change padding settings at once, as the batch worker and a stream would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch

from lmforge.config import GenerationConfig
from lmforge.generation import decoding_kwargs, prompt_text, stop_token_ids
from lmforge.train.device import autocast


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


@dataclass(frozen=True)
class Job:
    """One prompt to complete with its own decoding settings."""

    prompt: str
    cfg: GenerationConfig
    strip: bool = False  # chat answers are trimmed like `lmforge generate`; raw completions are not


class Engine:
    """A loaded model (`lmforge.load`) plus what the server needs around it."""

    def __init__(self, loaded: Any, name: str):
        self.loaded, self.name = loaded, name
        self.tokenizer = loaded.tokenizer
        self._lock = threading.Lock()
        self.context = getattr(loaded.model.config, "max_position_embeddings", None)

    @property
    def task(self) -> str:
        return self.loaded.task.name

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        with self._lock:
            return prompt_text(self.tokenizer, messages)

    def count(self, text: str) -> int:
        with self._lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def config(self, max_tokens: int, temperature: float | None, top_p: float | None,
               stop: list[str] | None) -> GenerationConfig:
        """The model's saved decoding settings with the request's overrides; temperature 0 is greedy."""
        cfg = replace(self.loaded.cfg.generation, max_new_tokens=max_tokens)
        if temperature is not None:
            cfg = replace(cfg, do_sample=temperature > 0, temperature=temperature or cfg.temperature)
        if top_p is not None:
            cfg = replace(cfg, top_p=top_p)
        return replace(cfg, stop=list(stop)) if stop is not None else cfg

    def classify_batch(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.loaded.predict(texts)

    def complete(self, jobs: list[Job]) -> list[Completion]:
        """Jobs with equal decoding settings share one `model.generate` call."""
        groups: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(repr(job.cfg), []).append(i)
        results: list[Completion | None] = [None] * len(jobs)
        for indexes in groups.values():
            done = self._complete_group([jobs[i] for i in indexes])
            for i, completion in zip(indexes, done):
                results[i] = completion
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def _complete_group(self, jobs: list[Job]) -> list[Completion]:
        cfg, tok = jobs[0].cfg, self.tokenizer
        enc = self._encode([job.prompt for job in jobs])
        with autocast(self.loaded.precision, self.loaded.device):
            out = self.loaded.model.generate(**enc, **decoding_kwargs(tok, cfg))
        stops, prompt_lengths = set(stop_token_ids(tok)), enc["attention_mask"].sum(dim=1).tolist()
        results = []
        for job, row, n_prompt in zip(jobs, out[:, enc["input_ids"].shape[1]:].tolist(), prompt_lengths):
            end = next((i for i, t in enumerate(row) if t in stops), None)
            ids = row if end is None else row[:end]
            text, cut = cut_at_stop(tok.decode(ids, skip_special_tokens=True), cfg.stop)
            finish = "length" if end is None and not cut and len(row) >= cfg.max_new_tokens else "stop"
            results.append(Completion(text.strip() if job.strip else text, int(n_prompt),
                                      len(ids) + (end is not None), finish))
        return results

    def _encode(self, prompts: list[str]) -> Any:
        with self._lock:
            side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"  # new tokens follow each prompt
            try:
                enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            finally:
                self.tokenizer.padding_side = side
        return enc.to(self.loaded.device)

    def stream(self, prompt: str, cfg: GenerationConfig, cancel: threading.Event, timeout: float) -> Iterator[str]:
        """Text pieces as they are generated; setting `cancel` (client gone) stops generation."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        enc = self._encode([prompt])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)

        def work() -> None:
            with torch.no_grad(), autocast(self.loaded.precision, self.loaded.device):
                self.loaded.model.generate(**enc, **decoding_kwargs(self.tokenizer, cfg), streamer=streamer,
                                           stopping_criteria=StoppingCriteriaList([Cancelled()]))

        threading.Thread(target=work, daemon=True).start()
        return iter(streamer)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop string (generate keeps the matched stop), and whether one matched."""
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)


class StopCutter:
    """Streams text while hiding stop strings: holds back a tail that might be the start of one."""

    def __init__(self, stops: list[str]):
        self.stops, self.pending, self.stopped = [s for s in stops if s], "", False
        self.hold = max((len(s) for s in self.stops), default=1) - 1

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text, cut = cut_at_stop(self.pending + piece, self.stops)
        if cut:
            self.stopped, self.pending = True, ""
            return text
        keep = len(text) - self.hold if self.hold else len(text)
        self.pending = text[max(keep, 0):]
        return text[: max(keep, 0)]

    def flush(self) -> str:
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text
