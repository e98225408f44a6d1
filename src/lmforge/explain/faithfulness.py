"""How far to trust an attribution: AOPC comprehensiveness and sufficiency (DeYoung et al. 2020, ERASER).

For each bin q, the top ceil(q * n) tokens by attribution form a rationale. Comprehensiveness asks
how much the predicted probability drops when the rationale is deleted (higher: the explanation
found what the model used); sufficiency how much it drops when only the rationale is kept (lower:
the rationale alone carries the prediction). AOPC averages each over the bins; a rationale equal to
the previous bin's is counted once (as ferret does, so short texts are not weighted by repeats).
Both numbers mean little alone, so every explanation carries them for a random ranking of the same
tokens too. Pure functions on arrays: the caller runs the model on the variants they describe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)  # ERASER's shares of tokens removed


@dataclass(frozen=True)
class Faithfulness:
    """AOPC scores of one attribution, and of random rankings of the same tokens (mean of draws)."""

    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float


def rationales(scores: np.ndarray, bins: Sequence[float] = BINS) -> list[np.ndarray]:
    """Positions of the top ceil(q * n) scores for each bin q, each distinct rationale once."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sizes = sorted({min(len(order), max(1, math.ceil(q * len(order)))) for q in bins}) if len(order) else []
    return [np.sort(order[:k]) for k in sizes]


def variants(n: int, rationale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions kept (of 0..n-1) for comprehensiveness (rationale deleted) and sufficiency (only it kept)."""
    inside: np.ndarray = np.zeros(n, dtype=bool)
    inside[rationale] = True
    return np.flatnonzero(~inside), np.flatnonzero(inside)


def aopc(full: float, after: np.ndarray) -> float:
    """Mean drop of the target probability from `full` over the variants' probabilities `after`."""
    return float(np.mean(full - np.asarray(after))) if len(after) else 0.0
