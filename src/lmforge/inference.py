"""Load a saved lmforge model folder and use it: `lmforge.load(path).predict([...])`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmforge.config import Config
from lmforge.decoding import generate, prompt_text, use_template
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

    def explain_answer(self, question: str, answer: str | None = None) -> dict[str, Any]:
        """Which words of `question` the answer (generated here unless given) relied on: the answer's
        log-probability lost when each word is deleted from the prompt (see `explain.generation`)."""
        _check_texts([question])
        task = self.generator("explain answers")
        prompt = prompt_text(self.tokenizer, task.conversations([question])[0])
        answer = self.generate([question])[0] if answer is None else answer
        at = prompt.rfind(question)  # the template quotes the question verbatim, after any system prompt
        words = split_words(question)
        scores = answer_scores(self.model, self.tokenizer, prompt,
                               [Span(w.text, w.start + at, w.end + at) for w in words], answer)
        return {"text": question, "answer": answer, "method": "occlusion (answer log-probability)",
                "words": [{"word": w.text, "start": w.start, "end": w.end, "score": round(v, 6)}
                          for w, v in zip(words, scores)]}

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


def _check_texts(texts: list[str]) -> None:
    empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise LmforgeError(f"input {empty[0]} is empty or not a string")


def load(path: str | Path, precision: str = "auto", batch_size: int = 64, template: str | None = None,
         quantize: str = "") -> Loaded:
    """Load a model folder written by lmforge (or a plain HF folder with a classification head).

    `template` (a built-in name or a .jinja file) replaces a generation model's saved chat template,
    with a warning when it differs. `quantize="int8"` quantizes the weights in memory on load
    (int8-dynamic for encoders, int8-weight-only for generators; see `lmforge quantize`).
    """
    folder = model_folder(path)
    cfg = run_config(folder)
    task = build_task(cfg.task, cfg)
    placed = load_placed(folder, task.auto_class, precision, quantize)
    task.bind(placed.model, placed.tokenizer)
    loaded = Loaded(cfg, task, placed.model, placed.tokenizer, placed.device, placed.precision, batch_size)
    if template:
        loaded.generator("use a chat template")
        use_template(placed.tokenizer, template, str(folder))
    return loaded
