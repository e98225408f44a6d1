"""The model side of the server: classify texts, complete prompts (batched), stream one prompt.

Decoding is `lmforge.generation`'s (`complete`, `stream`): the engine adds what a server needs around
it, namely request settings turned into a decoding config, jobs grouped so equal settings share one
batch, and token counts under the tokenizer's lock (handlers, the batch worker and streams run at once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Iterator

from lmforge.config import GenerationConfig
from lmforge.generation import Completion, complete, cut_at_stop, prompt_text, stream, tokenizer_lock


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
        self.context = getattr(loaded.model.config, "max_position_embeddings", None)

    @property
    def task(self) -> str:
        return self.loaded.task.name

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return prompt_text(self.tokenizer, messages)

    def count(self, text: str) -> int:
        with tokenizer_lock(self.tokenizer):
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
        """Jobs with equal decoding settings share one batch of `generation.complete`."""
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((repr(job.cfg), job.strip), []).append(i)
        results: list[Completion] = [None] * len(jobs)  # type: ignore[list-item]
        loaded = self.loaded
        for indexes in groups.values():
            first = jobs[indexes[0]]
            done = complete(loaded.model, self.tokenizer, [jobs[i].prompt for i in indexes], first.cfg,
                            loaded.device, loaded.precision, batch_size=len(indexes), strip=first.strip)
            for i, completion in zip(indexes, done):
                results[i] = completion
        return results

    def stream(self, prompt: str, cfg: GenerationConfig, cancel: threading.Event, timeout: float) -> Iterator[str]:
        """Text pieces as they are generated; setting `cancel` (client gone) stops generation."""
        loaded = self.loaded
        return stream(loaded.model, self.tokenizer, prompt, cfg, loaded.device, loaded.precision, cancel, timeout)


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
