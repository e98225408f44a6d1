"""Explain texts: which tokens and words drove each predicted label, and how far to trust that.

    explanations, choice = explain(scorer, texts, method="auto")

Each predicted label gets its own attribution (one for single-label models, one per predicted label
for multi-label, the most probable when none passes the threshold). With faithfulness on, every
attribution carries its AOPC comprehensiveness and sufficiency and those of random rankings.
`method="auto"` runs every applicable method on a sample, keeps the most faithful (highest
comprehensiveness minus sufficiency) and says which, and by how much.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.explain.faithfulness import Faithfulness, aopc, rationales, variants
from lmforge.explain.methods import METHODS, Budget, Row
from lmforge.explain.scorer import Encoded, Scorer
from lmforge.explain.words import Span, split_words, word_scores
from lmforge.log import logger
from lmforge.runtime.forward import inference_order

# Rows attributed per Captum call: enough to fill a forward pass with a few texts' perturbations or
# integration steps, few enough that IG's steps x rows embeddings stay small.
ROWS_PER_CALL = 8
AUTO_SAMPLE = 8  # texts `auto` compares the methods on


@dataclass
class Attribution:
    """One label's attribution over one text."""

    label: str
    prob: float
    tokens: list[dict[str, Any]]  # {"token", "start", "end", "score"} for every text token
    words: list[dict[str, Any]]  # {"word", "start", "end", "score"}: token scores summed per word
    faithfulness: Faithfulness | None = None


@dataclass
class Explanation:
    text: str
    method: str
    targets: list[Attribution]
    truncated: bool  # the model read only the first max_length tokens; later words are not scored

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict (explain.jsonl, the API, /v1/explain)."""
        return asdict(self)


@dataclass(frozen=True)
class MethodScore:
    """A method's mean faithfulness over the auto sample, and its cost."""

    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float
    seconds_per_text: float

    @property
    def merit(self) -> float:
        return self.comprehensiveness - self.sufficiency


@dataclass(frozen=True)
class Choice:
    """What `auto` measured, and the method it chose."""

    method: str
    texts: int
    scores: dict[str, MethodScore]

    def summary(self) -> str:
        best = self.scores[self.method]
        text = (f"auto chose {self.method} on {self.texts} texts: comprehensiveness {best.comprehensiveness:.3f} "
                f"(random {best.random_comprehensiveness:.3f}), sufficiency {best.sufficiency:.3f} "
                f"(random {best.random_sufficiency:.3f})")
        others = sorted((s.merit, name) for name, s in self.scores.items() if name != self.method)
        if others:
            text += f"; next best {others[-1][1]} by {best.merit - others[-1][0]:.3f} in comprehensiveness − sufficiency"
        return text


def explain(scorer: Scorer, texts: Sequence[str], method: str = "auto", budget: Budget = Budget(),
            faithfulness: bool = True) -> tuple[list[Explanation], Choice | None]:
    """Explanations of `texts` in order, and what `auto` measured (None for a named method)."""
    names = applicable(scorer, method)
    encoded = scorer.encode(texts)
    probs = scorer.probs([e.ids for e in encoded])
    targets = [_targets(scorer, p) for p in probs]
    owner = [n for n, ts in enumerate(targets) for _ in ts]  # the text of each row
    rows = [(encoded[n], t) for n, ts in enumerate(targets) for t in ts]
    full = np.array([probs[n, t] for n, t in zip(owner, (t for _, t in rows))])
    done: dict[int, tuple[np.ndarray, Faithfulness | None]] = {}
    choice = None
    if len(names) > 1:
        choice, done = _choose(scorer, rows, full, [i for i, n in enumerate(owner) if n < AUTO_SAMPLE], names, budget)
        logger.info(choice.summary())
    chosen = choice.method if choice else names[0]
    rest = [i for i in range(len(rows)) if i not in done]
    done.update(zip(rest, _attribute(scorer, [rows[i] for i in rest], full[rest], chosen, budget, faithfulness)))
    by_text: list[list[Attribution]] = [[] for _ in encoded]
    for i, (n, (e, target)) in enumerate(zip(owner, rows)):
        scores, faith = done[i]
        by_text[n].append(_attribution(scorer, e, target, full[i], scores, faith if faithfulness else None))
    return [Explanation(e.text, chosen, by_text[n], _truncated(e)) for n, e in enumerate(encoded)], choice


def applicable(scorer: Scorer, method: str) -> list[str]:
    """The methods `method` stands for on this model: itself, or every one `auto` may pick."""
    if method != "auto" and method not in METHODS:
        raise LmforgeError(f"unknown explanation method '{method}' (choose auto, {', '.join(METHODS)})")
    if method != "auto":
        if METHODS[method].gradient and not scorer.differentiable:
            raise LmforgeError(f"{method} needs gradients, which int8-dynamic models do not have: "
                               "use --method occlusion or shap (or explain the float model)")
        return [method]
    return [name for name, m in METHODS.items() if scorer.differentiable or not m.gradient]


def _targets(scorer: Scorer, probs: np.ndarray) -> list[int]:
    """The predicted class, or every predicted label (the most probable when none is predicted)."""
    decided = scorer.task.decide(probs[None])[0]
    if not scorer.task.multi:
        return [int(decided)]
    return [int(i) for i in np.flatnonzero(decided)] or [int(np.argmax(probs))]


def _choose(scorer: Scorer, rows: list[Row], full: np.ndarray, sample: list[int], names: list[str],
            budget: Budget) -> tuple[Choice, dict[int, tuple[np.ndarray, Faithfulness | None]]]:
    """Every method on the `sample` rows; the winner's results are kept for them."""
    texts = len({id(rows[i][0]) for i in sample})
    if max(len(rows[i][0].content) for i in sample) > budget.shap_max_tokens:
        names = [n for n in names if n != "shap"]
    results, scores = {}, {}
    for name in names:
        start = time.perf_counter()
        results[name] = _attribute(scorer, [rows[i] for i in sample], full[sample], name, budget, True)
        seconds = (time.perf_counter() - start) / texts
        faith = [f for _, f in results[name] if f is not None]
        means = {k.name: float(np.mean([getattr(f, k.name) for f in faith])) for k in fields(Faithfulness)}
        scores[name] = MethodScore(**means, seconds_per_text=seconds)
    chosen = max(scores, key=lambda n: scores[n].merit)
    return Choice(chosen, texts, scores), dict(zip(sample, results[chosen]))


def _attribute(scorer: Scorer, rows: list[Row], full: np.ndarray, name: str, budget: Budget,
               faithfulness: bool) -> list[tuple[np.ndarray, Faithfulness | None]]:
    """Scores (and faithfulness) of `rows` with one method, in length-sorted calls of ROWS_PER_CALL rows."""
    results: list[tuple[np.ndarray, Faithfulness | None]] = [(np.zeros(0), None)] * len(rows)
    for batch in inference_order([len(e.ids) for e, _ in rows], ROWS_PER_CALL):
        chunk = [rows[i] for i in batch]
        scores = METHODS[name].attribute(scorer, chunk, budget)
        faith = measure(scorer, chunk, scores, full[batch], budget) if faithfulness else [None] * len(batch)
        for i, s, f in zip(batch, scores, faith):
            results[i] = (s, f)
    return results


def measure(scorer: Scorer, rows: list[Row], scores: list[np.ndarray], full: np.ndarray,
            budget: Budget) -> list[Faithfulness]:
    """AOPC comprehensiveness and sufficiency of each row's scores, and of `budget.random_draws` random
    rankings (seeded per row, so a rerun gives the same numbers); every variant in one batched pass."""
    sequences: list[list[int]] = []
    targets: list[int] = []
    spans: list[tuple[int, int, int]] = []  # per (row, ranking): start of its variants, comprehensiveness count
    for n, ((e, target), s) in enumerate(zip(rows, scores)):
        rng = np.random.default_rng(n)
        rankings = [s[e.content]] + [rng.random(len(e.content)) for _ in range(budget.random_draws)]
        for ranking in rankings:
            start, sets = len(sequences), rationales(ranking)
            for rationale in sets:
                sequences += [_keep(e, kept) for kept in variants(len(e.content), rationale)]
            targets += [target] * (2 * len(sets))
            spans.append((n, start, len(sets)))
    probs = scorer.target_probs(sequences, targets)
    per_row: dict[int, list[tuple[float, float]]] = {}
    for n, start, count in spans:
        after = probs[start : start + 2 * count]
        per_row.setdefault(n, []).append((aopc(float(full[n]), after[0::2]), aopc(float(full[n]), after[1::2])))
    return [Faithfulness(pairs[0][0], pairs[0][1], float(np.mean([c for c, _ in pairs[1:]])),
                         float(np.mean([s for _, s in pairs[1:]]))) for _, pairs in sorted(per_row.items())]


def _keep(encoded: Encoded, kept: np.ndarray) -> list[int]:
    """The encoded ids with only the text tokens at content positions `kept` (special tokens stay)."""
    drop = set(encoded.content[np.setdiff1d(np.arange(len(encoded.content)), kept)].tolist())
    return [t for i, t in enumerate(encoded.ids) if i not in drop]


def _attribution(scorer: Scorer, e: Encoded, target: int, prob: float, scores: np.ndarray,
                 faith: Faithfulness | None) -> Attribution:
    pieces = scorer.tokenizer.convert_ids_to_tokens([e.ids[i] for i in e.content])
    tokens = [{"token": piece, "start": e.offsets[i][0], "end": e.offsets[i][1], "score": round(float(scores[i]), 6)}
              for piece, i in zip(pieces, e.content)]
    read = _read_words(e)
    totals = word_scores(read, [e.offsets[i] for i in e.content], [float(scores[i]) for i in e.content])
    words = [{"word": w.text, "start": w.start, "end": w.end, "score": round(t, 6)} for w, t in zip(read, totals)]
    return Attribution(scorer.task.label_names[target], round(float(prob), 6), tokens, words, faith)


def _read_words(e: Encoded) -> list[Span]:
    """The words of the text the model read (up to its last text token)."""
    end = max((e.offsets[i][1] for i in e.content), default=0)
    return [w for w in split_words(e.text) if w.start < end]


def _truncated(e: Encoded) -> bool:
    return len(_read_words(e)) < len(split_words(e.text))
