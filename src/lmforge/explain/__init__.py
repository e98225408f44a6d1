"""Token and word attributions for sequence classifiers, with faithfulness scores that say how far to
trust them: `explain(scorer, texts, method)`. Users reach it through `lmforge explain`,
`lmforge.load(path).explain(texts)`, `POST /v1/explain` and the worst errors of report.html."""

from lmforge.explain.explainer import Choice, Explanation, explain
from lmforge.explain.methods import METHODS, Budget
from lmforge.explain.scorer import Scorer

__all__ = ["METHODS", "Budget", "Choice", "Explanation", "Scorer", "explain"]
