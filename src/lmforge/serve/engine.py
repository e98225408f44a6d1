"""The model side of the server: classify and embed texts, complete prompts (batched), stream one prompt.

Decoding is `lmforge.decoding`'s (`complete`, `stream`): the engine adds what a server needs around
it, namely request settings turned into a decoding config, jobs grouped so equal settings share one
batch, and token counts under the tokenizer's lock (handlers, the batch worker and streams run at once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Hashable, Iterator, TypeVar

import numpy as np

from lmforge import greedy
from lmforge.config import GenerationConfig
from lmforge.decoding import Completion, complete, cut_at_stop, prompt_text, stream, tokenizer_lock
from lmforge.inference import Loaded
from lmforge.log import logger
from lmforge.runtime.device import autocast
from lmforge.tasks.contracts import ClassifiesSequences, Explains, Generates, TagsSpans

T = TypeVar("T")
# Tokens an embedding reads at most, as `lmforge kb` embeds (and all-MiniLM was trained): vectors
# from the server and from a knowledge-base index built with the same encoder agree.
EMBED_MAX_LENGTH = 256


@dataclass(frozen=True)
class Job:
    """One prompt to complete with its own decoding settings."""

    prompt: str
    cfg: GenerationConfig
    strip: bool = False  # chat answers are trimmed like `lmforge generate`; raw completions are not


class Engine:
    """A loaded model (`lmforge.load`) plus what the server needs around it."""

    def __init__(self, loaded: Loaded, name: str):
        self.loaded, self.name = loaded, name
        self.tokenizer = loaded.tokenizer
        self.context = getattr(loaded.model.config, "max_position_embeddings", None)

    def warm_up(self) -> None:
        """Compile the greedy decoding step now (`generation.compile`), so that no request waits for it."""
        loaded, cfg = self.loaded, self.loaded.cfg.generation
        if not (cfg.compile and self.generates and greedy.supports(loaded.model)):
            return
        logger.info("compiling the decoding step (once per process; minutes on a small CPU)")
        with autocast(loaded.precision, loaded.device, loaded.model):
            seconds = greedy.warm_up(loaded.model, greedy.Plan(draft=cfg.prompt_lookup, compile=True), loaded.device)
        logger.info(f"decoding step compiled in {seconds:.0f} s")

    @property
    def kind(self) -> str:
        """What the model is, for messages and /v1/models (never used to decide what it can do)."""
        return self.loaded.task.name

    @property
    def classifies(self) -> bool:
        """Sequence classifiers classify and embed (their encoder's hidden states are pooled)."""
        return isinstance(self.loaded.task, ClassifiesSequences)

    @property
    def tags_spans(self) -> bool:
        """Token taggers find typed character spans (entities) in texts."""
        return isinstance(self.loaded.task, TagsSpans)

    @property
    def explains(self) -> bool:
        return isinstance(self.loaded.task, Explains)

    @property
    def generates(self) -> bool:
        return isinstance(self.loaded.task, Generates)

    @property
    def headless(self) -> bool:
        """A plain encoder folder (e.g. all-MiniLM): it embeds, but its classification head is untrained."""
        architectures = getattr(self.loaded.model.config, "architectures", None) or []
        return self.classifies and not any(a.endswith("ForSequenceClassification") for a in architectures)

    def run(self, items: list[tuple[str, Any]]) -> list[Any]:
        """One batch from the queue: ("classify" | "ner" | "embed" | "explain" | "complete", payload) items,
        each kind in one call."""
        kinds: dict[str, Callable[[list], list]] = {"classify": self.classify_batch, "ner": self.classify_batch,
                                                    "embed": self.embed_batch, "explain": self.explain_batch,
                                                    "complete": self.complete}
        return _grouped(items, lambda item: item[0], lambda kind, group: kinds[kind]([p for _, p in group]))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return prompt_text(self.tokenizer, messages)

    def count(self, text: str) -> int:
        with tokenizer_lock(self.tokenizer):
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def tokens(self, item: tuple[str, Any]) -> int:
        """What a queue item costs a forward pass: the tokens of its text or prompt, as far as the model
        reads them (the batcher groups items of similar cost and caps each pass's padded tokens)."""
        kind, payload = item
        if kind == "complete":
            return self.count(payload.prompt)
        text = payload[0] if kind == "explain" else payload
        return min(self.count(text), EMBED_MAX_LENGTH if kind == "embed" else self.loaded.cfg.model.max_length)

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
        """The model's prediction records (`lmforge.load(...).predict`): labels, or a tagger's entities."""
        return self.loaded.predict(texts)

    def explain_batch(self, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """(text, method) items: texts asking for the same method share one explanation batch."""
        return _grouped(items, lambda item: item[1],
                        lambda method, group: self.loaded.explain([text for text, _ in group], str(method)))

    def embed_batch(self, texts: list[str]) -> list[tuple[np.ndarray, int]]:
        """(unit-length mean-pooled vector, tokens read) per text, pooled as `lmforge kb` does."""
        from lmforge.kb import encode_texts

        loaded, tok = self.loaded, self.tokenizer
        vectors = encode_texts(_encoder(loaded.model), tok, texts, loaded.device, loaded.precision,
                               batch_size=len(texts), max_length=EMBED_MAX_LENGTH)
        with tokenizer_lock(tok):
            counts = [len(ids) for ids in tok(texts, truncation=True, max_length=EMBED_MAX_LENGTH)["input_ids"]]
        return list(zip(vectors, counts))

    def complete(self, jobs: list[Job]) -> list[Completion]:
        """Jobs with equal decoding settings share one batch of `generation.complete`."""
        loaded = self.loaded

        def run(key: Hashable, group: list[Job]) -> list[Completion]:
            return complete(loaded.model, self.tokenizer, [job.prompt for job in group], group[0].cfg,
                            loaded.device, loaded.precision, batch_size=len(group), strip=group[0].strip)

        return _grouped(jobs, lambda job: (repr(job.cfg), job.strip), run)

    def stream(self, prompt: str, cfg: GenerationConfig, cancel: threading.Event, timeout: float) -> Iterator[str]:
        """Text pieces as they are generated; setting `cancel` (client gone) stops generation."""
        loaded = self.loaded
        return stream(loaded.model, self.tokenizer, prompt, cfg, loaded.device, loaded.precision, cancel, timeout)


def _grouped(items: list[T], key: Callable[[T], Hashable], run: Callable[[Hashable, list[T]], list]) -> list:
    """`run(key, group)` once per group of items sharing a key; results back in the order of `items`."""
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    results: list[Any] = [None] * len(items)
    for k, indexes in groups.items():
        for i, result in zip(indexes, run(k, [items[i] for i in indexes])):
            results[i] = result
    return results


def _encoder(model: Any) -> Any:
    """The encoder under a classification head (and under peft's wrapper): its hidden states get pooled."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model.base_model


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
