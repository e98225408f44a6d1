"""Load a saved lmforge model folder and use it: `lmforge.load(path).predict([...])`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmforge.config import Config
from lmforge.data.validate import text_problem
from lmforge.decoding import generate, prompt_text, rag_prompt, use_template
from lmforge.errors import LmforgeError
from lmforge.explain import Budget, Explanation, Scorer, explain
from lmforge.explain.generation import answer_scores
from lmforge.explain.words import Span, split_words
from lmforge.models.folder import load_placed, model_folder, run_config
from lmforge.runtime.forward import Outputs, run_forward
from lmforge.tasks import build_task
from lmforge.tasks.contracts import ClassifiesSequences, Explains, Generates, Model, Predicts, Task

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class Loaded:
    """A model folder ready to use: its run config, task, model and tokenizer on the chosen device."""

    cfg: Config
    task: Task[Any]
    model: Model
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    precision: str
    batch_size: int = 64

    def outputs(self, split: object) -> Outputs:
        """The task's per-example outputs on one of its splits (`read_split`, `read_texts`, ...)."""
        features = self.task.encode(split, self.tokenizer)
        return run_forward(self.task, self.model, features, self.batch_size, self.device, self.precision)

    def generate(self, questions: list[str]) -> list[str]:
        """Answers to single-turn questions, formatted with the model's saved chat template."""
        task = self.generator("answer questions")
        return generate(self.model, self.tokenizer, task.conversations(questions), self.cfg.generation, self.device,
                        self.precision, batch_size=self.batch_size)

    def predict(self, texts: list[str] | str) -> list[dict[str, Any]]:
        """Predictions for raw texts, in order."""
        task = self.predictor("predict labels for texts")
        texts = [texts] if isinstance(texts, str) else texts
        _check_texts(texts)
        if not texts:
            return []
        return task.predictions(self.outputs(task.text_split(texts)))

    def explain(self, texts: list[str] | str, method: str = "auto", budget: Budget = Budget(),
                faithfulness: bool = True) -> list[dict[str, Any]]:
        """Which words drove each prediction, one JSON-ready record per text (see `lmforge.explain`)."""
        return [e.record() for e in self.explanations(texts, method, budget, faithfulness)]

    def explanations(self, texts: list[str] | str, method: str = "auto", budget: Budget = Budget(),
                     faithfulness: bool = True) -> list[Explanation]:
        """`explain` as `Explanation` objects (what the command and the report render)."""
        texts = [texts] if isinstance(texts, str) else texts
        _check_texts(texts)
        return explain(self.scorer("explain predictions"), texts, method, budget, faithfulness)[0] if texts else []

    def explain_answer(self, question: str, answer: str | None = None,
                       passages: list[str] | None = None) -> dict[str, Any]:
        """Which parts of the prompt the answer (generated here unless given) relied on: the answer's
        log-probability lost when each is deleted (see `explain.generation`). The parts are the
        question's words, the system prompt, and with `passages` each retrieved passage of a RAG
        prompt (`decoding.rag_prompt`), so a RAG answer shows which passage it used."""
        _check_texts([question, *(passages or [])])
        task = self.generator("explain answers")
        conversation = task.conversations([rag_prompt(question, passages) if passages else question])[0]
        prompt = prompt_text(self.tokenizer, conversation)
        if answer is None:
            answer = generate(self.model, self.tokenizer, [conversation], self.cfg.generation, self.device,
                              self.precision)[0]
        system = conversation[0]["content"] if conversation[0]["role"] == "system" else ""
        at = prompt.rfind(question)  # the template quotes the question verbatim, after everything else
        words = split_words(question)
        spans = [Span(w.text, w.start + at, w.end + at) for w in words]
        spans += _located(prompt, ([system] if system else []) + (passages or []))
        scores = answer_scores(self.model, self.tokenizer, prompt, sorted(spans, key=lambda s: s.start), answer)
        score = dict(zip(sorted((s.start for s in spans)), scores))
        record: dict[str, Any] = {
            "text": question, "answer": answer, "method": "occlusion (answer log-probability)",
            "words": [{"word": w.text, "start": w.start, "end": w.end, "score": round(score[w.start + at], 6)}
                      for w in words]}
        if system:
            record["system"] = {"text": system, "score": round(score[spans[len(words)].start], 6)}
        if passages:
            record["passages"] = [{"passage": s.text, "score": round(score[s.start], 6)} for s in spans[-len(passages):]]
        return record

    def scorer(self, doing: str) -> Scorer:
        """This model as explanations see it, if it is a classifier they can explain."""
        if not isinstance(self.task, Explains):
            raise self._cannot(doing)
        return Scorer(self.model, self.tokenizer, self.task, self.device, self.precision, self.cfg.model.max_length,
                      self.batch_size)

    def predictor(self, doing: str) -> Predicts[Any]:
        """The task, if it predicts records for texts; else one clear error saying what it is."""
        if not isinstance(self.task, Predicts):
            raise self._cannot(doing)
        return self.task

    def generator(self, doing: str) -> Generates[Any]:
        """The task, if it generates answers; else one clear error saying what it is."""
        if not isinstance(self.task, Generates):
            raise self._cannot(doing)
        return self.task

    def classifier(self, doing: str) -> ClassifiesSequences[Any]:
        """The task, if it is a sequence classifier; else one clear error saying what it is."""
        if not isinstance(self.task, ClassifiesSequences):
            raise self._cannot(doing)
        return self.task

    def _cannot(self, doing: str) -> LmforgeError:
        return LmforgeError(f"{self.cfg.model.path} is a {self.task.name} model: it cannot {doing}")


def _located(prompt: str, parts: list[str]) -> list[Span]:
    """Each of `parts` as a span of `prompt`, searched in order (they appear in it in that order)."""
    spans, at = [], 0
    for part in parts:
        start = prompt.find(part, at)
        if start < 0:
            raise LmforgeError(f"the chat template rewrote a prompt part, so it cannot be attributed: {part[:40]!r}")
        spans.append(Span(part, start, start + len(part)))
        at = start + len(part)
    return spans


def _check_texts(texts: list[str]) -> None:
    for i, text in enumerate(texts):
        problem = text_problem(text)
        if problem:
            raise LmforgeError(f"input {i}: {problem}")


def load(path: str | Path, precision: str = "auto", batch_size: int = 64, template: str | None = None,
         quantize: str = "", pack: bool = True) -> Loaded:
    """Load a model folder written by lmforge (or a plain HF folder with a classification head).

    `template` (a built-in name or a .jinja file) replaces a generation model's saved chat template,
    with a warning when it differs. `quantize="int8"` quantizes the weights in memory on load
    (int8-dynamic for encoders, int8-weight-only for generators; see `lmforge quantize`). `pack=False`
    keeps plain Linear layers (no oneDNN weight packing) for code that rewrites or traces the model.
    """
    folder = model_folder(path)
    cfg = run_config(folder)
    task = build_task(cfg.task, cfg)
    placed = load_placed(folder, task.auto_class, precision, quantize, pack)
    task.bind(placed.model, placed.tokenizer)
    loaded = Loaded(cfg, task, placed.model, placed.tokenizer, placed.device, placed.precision, batch_size)
    if template:
        loaded.generator("use a chat template")
        use_template(placed.tokenizer, template, str(folder))
    return loaded
