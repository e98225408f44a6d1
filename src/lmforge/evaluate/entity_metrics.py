"""Entity-level scores for token tagging, as seqeval defines them: pure functions on tag lists.

An entity counts as found only with its exact boundaries and type. seqeval does the counting (in
its default, conlleval-compatible mode), so the numbers are the ones papers and the CoNLL scripts
report. Both sides are first read into spans by `lmforge.data.tagging.tags_to_spans` and written
back as BIO, so BIO and BIOES tags score alike and an I- that starts an entity counts as conlleval
counts it.
"""

from __future__ import annotations

from lmforge.data.tagging import OUTSIDE, Span, spans_to_tags, tags_to_spans

MISSED = OUTSIDE  # the confusion matrix's row/column for "no entity with these boundaries"


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """Micro and macro entity P/R/F1, per type, token accuracy and a type confusion matrix.

    `per_class` is keyed by entity type (support = gold entities of that type), so reports show
    it as they show a classifier's per-class table. The confusion matrix pairs gold and predicted
    entities with identical boundaries; a gold entity without one is counted under column "O"
    (missed), a predicted one without a gold entity under row "O" (spurious).
    """
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    if len(true_tags) != len(pred_tags) or any(len(t) != len(p) for t, p in zip(true_tags, pred_tags)):
        raise ValueError("true and predicted tags must have the same sentences and lengths")
    true_spans = [tags_to_spans(tags)[0] for tags in true_tags]
    pred_spans = [tags_to_spans(tags)[0] for tags in pred_tags]
    true_bio = [spans_to_tags(s, len(t), "bio") for s, t in zip(true_spans, true_tags)]
    pred_bio = [spans_to_tags(s, len(t), "bio") for s, t in zip(pred_spans, pred_tags)]
    types = sorted({s.label for spans in true_spans + pred_spans for s in spans})
    result: dict = {}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(true_bio, pred_bio, average=average, zero_division=0)
        result |= {f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)}
    words = sum(len(t) for t in true_tags)
    result["token_accuracy"] = sum(a == b for t, p in zip(true_tags, pred_tags) for a, b in zip(t, p)) / max(words, 1)
    result["per_class"] = _per_type(true_bio, pred_bio, types, true_spans)
    result["confusion_matrix"] = type_confusion(true_spans, pred_spans, types)
    result["n"] = len(true_tags)
    result["n_entities"] = sum(len(s) for s in true_spans)
    return result


def _per_type(true_bio: list[list[str]], pred_bio: list[list[str]], types: list[str],
              true_spans: list[list[Span]]) -> dict[str, dict]:
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    if not types:
        return {}
    p, r, f, s = precision_recall_fscore_support(true_bio, pred_bio, average=None, zero_division=0)
    # seqeval lists the types it saw in sorted order, which is `types` (gold and predicted alike).
    return {t: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, t in enumerate(types)}


def type_confusion(true_spans: list[list[Span]], pred_spans: list[list[Span]], types: list[str]) -> dict:
    """Counts of (gold type, predicted type) over entities with the same boundaries, "O" for none."""
    labels = list(types) + [MISSED]
    index = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for gold, pred in zip(true_spans, pred_spans):
        predicted = {(s.start, s.end): s.label for s in pred}
        for span in gold:
            matrix[index[span.label]][index[predicted.pop((span.start, span.end), MISSED)]] += 1
        for label in predicted.values():
            matrix[index[MISSED]][index[label]] += 1
    return {"labels": labels, "matrix": matrix}
