"""Pure metric functions for generated answers against references, in Chinese, English or both.

Chinese and Japanese are written without spaces, so splitting on whitespace would turn a whole
Chinese sentence into one "word" and any single-character difference into a total miss. The
usual practice for Chinese ROUGE/F1 (CMRC, DuReader, the CLUE baselines) is to score characters,
and for English (SQuAD) to score whitespace words. `tokens` does both at once: every CJK character
is its own token and the text between them splits on whitespace, so mixed answers such as
"我爱NLP" are scored sensibly without a segmenter (whose choices would change the scores).

BLEU and chrF++ are left to sacrebleu so the numbers are comparable with published ones; everything
else is computed here. All results are plain Python floats, ready for `json.dumps`.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from typing import Any

from lmforge.errors import LmforgeError

# Han (unified ideographs, extensions A-H, compatibility ideographs, radicals, 々 and 〇),
# kana (hiragana, katakana, phonetic extensions, half-width katakana) and hangul (jamo,
# compatibility jamo, syllables). One character of these is one token.
_CJK_RANGES = (
    "\u2e80-\u2fdf"  # CJK and Kangxi radicals
    "\u3005\u3007"  # 々 (iteration mark) and 〇 (ideographic zero)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3130-\u318f"  # hangul compatibility jamo
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width katakana
    "\u1100-\u11ff"  # hangul jamo
    "\U00020000-\U0003134f"  # CJK extensions B-H and the supplement
)
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
_TOKEN = re.compile(f"[{_CJK_RANGES}]|[^\\s{_CJK_RANGES}]+")
# SQuAD strips string.punctuation, which includes symbols such as $ + < = > that Unicode files
# under "S", not "P"; keep those so English scores match SQuAD's.
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def tokens(text: str) -> list[str]:
    """Normalise `text` and split it into CJK characters and whitespace-separated words.

    Normalisation is NFKC (full-width letters and digits become ASCII, so "ＮＬＰ" equals "NLP"),
    lower-casing, and deleting punctuation: ASCII punctuation plus every Unicode punctuation
    character, which covers ，。！？、；：“”‘’（）《》. Punctuation is deleted rather than
    replaced by a space, as in SQuAD, so "don't" stays one word. Articles are not removed.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    return _TOKEN.findall(text)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if both strings give the same token sequence after normalisation, else 0.0."""
    return float(tokens(prediction) == tokens(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style F1 over the bags of `tokens` (characters for CJK, words otherwise).

    Two empty answers agree (1.0); an empty answer against a non-empty one scores 0.0, which is
    how SQuAD 2.0 scores "no answer".
    """
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return _f_measure(overlap, len(pred), len(ref))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1): longest common subsequence of `tokens` over both lengths.

    Unlike `token_f1` this rewards order: the same characters shuffled score lower. Empty
    inputs follow `token_f1`.
    """
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    return _f_measure(_lcs_length(pred, ref), len(pred), len(ref))


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) from sacrebleu, one reference per prediction.

    sacrebleu's "13a" tokenizer splits on spaces and ASCII punctuation, so each unspaced run of
    Chinese would be a single token; when any reference contains CJK characters its "zh" tokenizer is
    used instead, which splits Chinese into characters as the WMT Chinese evaluations do. The
    text is passed as given (no lower-casing), so the score matches a direct sacrebleu call.
    """
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    tokenize = "zh" if any(_CJK_CHAR.search(ref) for ref in references) else "13a"
    result = _sacrebleu().corpus_bleu(list(predictions), [list(references)], tokenize=tokenize)
    return float(result.score)


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF++ (0-100) from sacrebleu: character 6-gram and word 2-gram F-score (beta = 2).

    Characters need no tokenizer, so the score means the same for Chinese and English targets, and
    it rewards a nearly right word that BLEU counts as wrong (WMT's metrics task found chrF closer to
    human judgement than BLEU). One sentence gives a sentence-level score.
    """
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return float(_sacrebleu().corpus_chrf(list(predictions), [list(references)], word_order=2).score)


def _sacrebleu() -> Any:
    try:
        import sacrebleu  # imported here so the rest of the module works without it
    except ImportError as exc:
        raise LmforgeError("BLEU and chrF need the sacrebleu package: pip install sacrebleu") from exc
    return sacrebleu


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), with the NLL in nats.

    No tokens means no evidence, so the answer is inf rather than a division error; a mean NLL
    too large for a float also gives inf.
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    if n_tokens == 0:
        return math.inf
    try:
        return math.exp(total_nll / n_tokens)
    except OverflowError:
        return math.inf


def generation_metrics(predictions: list[str], references: list[str]) -> dict:
    """Exact match, token F1 and ROUGE-L averaged over examples, corpus BLEU and chrF++, and the count.

    Per-example scores are averaged with equal weight per example (as SQuAD and CMRC report
    them); BLEU and chrF++ are corpus statistics and are not averages. An empty set scores 0.0 throughout.
    """
    _check_lengths(predictions, references)
    pairs = list(zip(predictions, references))
    return {
        "exact_match": _mean([exact_match(p, r) for p, r in pairs]),
        "token_f1": _mean([token_f1(p, r) for p, r in pairs]),
        "rouge_l": _mean([rouge_l(p, r) for p, r in pairs]),
        "bleu": bleu(predictions, references),
        "chrf": chrf(predictions, references),
        "n": len(pairs),
    }


def _is_punctuation(ch: str) -> bool:
    return ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P")


def _check_lengths(predictions: list[str], references: list[str]) -> None:
    """Refuse unpaired lists: zip would silently drop the tail of the longer one."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )


def _f_measure(overlap: int, n_pred: int, n_ref: int) -> float:
    """Harmonic mean of overlap/n_pred and overlap/n_ref, i.e. 2 * overlap / (n_pred + n_ref)."""
    return 2.0 * overlap / (n_pred + n_ref) if overlap else 0.0


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, with one row of the DP table kept at a time."""
    if len(b) > len(a):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
