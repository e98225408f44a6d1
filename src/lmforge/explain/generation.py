"""Which parts of a prompt a generated answer relied on: the answer's log-probability, attributed to
spans of the prompt (the question's words, or the knowledge-base passages a RAG prompt quotes).

Captum's LLMAttribution with FeatureAblation does the work: each span is deleted in turn (the rest of
the prompt, chat template included, stays as it was) and the drop in log p(answer | prompt) is that
span's score. One forward pass per span, no gradients: any causal LM lmforge loads works, int8 too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from lmforge.explain.words import Span
from lmforge.tasks.contracts import Model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def answer_scores(model: Model, tokenizer: PreTrainedTokenizerBase, prompt: str, spans: Sequence[Span],
                  answer: str) -> list[float]:
    """For each span of `prompt` (in order, not overlapping), the log-probability of `answer` lost
    when the span is deleted: positive where the answer relied on it."""
    from captum.attr import FeatureAblation, LLMAttribution, TextTemplateInput

    template, at = "", 0
    for span in spans:
        template += _literal(prompt[at : span.start]) + "{}"
        at = span.end
    template += _literal(prompt[at:])
    text = TextTemplateInput(template, values=[s.text for s in spans], baselines=[""] * len(spans))
    # forward_in_tokens=False: one teacher-forced pass over prompt + answer per deletion, the same
    # log-probabilities as Captum's default token-by-token loop for a causal LM, at 1/len(answer) the passes
    result = LLMAttribution(FeatureAblation(model), tokenizer).attribute(text, target=answer, forward_in_tokens=False)
    return [float(v) for v in result.seq_attr.reshape(-1).tolist()]


def _literal(text: str) -> str:
    """`text` as a str.format template that renders to itself."""
    return text.replace("{", "{{").replace("}", "}}")
