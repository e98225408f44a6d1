"""Generation metrics checked against hand-computed values and against sacrebleu directly."""

from __future__ import annotations

import builtins
import importlib.util
import json
import math

import pytest

from lmforge.errors import LmforgeError
from lmforge.evaluate.generation_metrics import (
    bleu,
    exact_match,
    generation_metrics,
    perplexity,
    rouge_l,
    token_f1,
    tokens,
)

# Only the BLEU tests need sacrebleu; the rest of the module must work without it.
needs_sacrebleu = pytest.mark.skipif(
    importlib.util.find_spec("sacrebleu") is None, reason="sacrebleu not installed"
)

ZH_PRED = "深度学习是机器学习的一个分支"
ZH_REF = "深度学习是一种机器学习方法"


def test_tokens_split_cjk_into_characters_and_english_into_words():
    assert tokens("我爱NLP和deep learning！") == ["我", "爱", "nlp", "和", "deep", "learning"]


def test_tokens_strip_full_width_and_cjk_punctuation():
    text = "“你好”，世界。！？、；：‘引’（括号）《书名》"
    assert tokens(text) == list("你好世界引括号书名")
    # NFKC turns full-width letters and digits into ASCII; spaces of any kind collapse.
    assert tokens("ＧＰＴ－４\u3000  is\tGOOD.") == ["gpt4", "is", "good"]


def test_tokens_kana_and_hangul_are_single_characters():
    assert tokens("カタカナ and 한국어") == ["カ", "タ", "カ", "ナ", "and", "한", "국", "어"]


def test_chinese_f1_and_rouge_l_by_hand():
    # pred: 深 度 学 习 是 机 器 学 习 的 一 个 分 支  (14 chars)
    # ref:  深 度 学 习 是 一 种 机 器 学 习 方 法     (13 chars)
    # bag overlap: 深1 度1 学2 习2 是1 机1 器1 一1 = 10
    #   P = 10/14, R = 10/13, F1 = 2*10 / (14+13) = 20/27
    # LCS: 深度学习是 + 机器学习 = 9 (一 comes after 机器学习 in pred but before it in ref,
    #   so it cannot join); ROUGE-L F = 2*9 / 27 = 2/3
    assert tokens(ZH_PRED) == list(ZH_PRED)
    assert token_f1(ZH_PRED, ZH_REF) == pytest.approx(20 / 27)
    assert rouge_l(ZH_PRED, ZH_REF) == pytest.approx(2 / 3)
    assert exact_match(ZH_PRED, ZH_REF) == 0.0


def test_chinese_spacing_does_not_matter():
    assert exact_match("深度 学习", "深度学习。") == 1.0


def test_english_case_and_punctuation_do_not_matter():
    pred, ref = "The Cat sat on the mat.", "the cat, sat on the MAT"
    assert exact_match(pred, ref) == 1.0
    assert token_f1(pred, ref) == 1.0
    assert rouge_l(pred, ref) == 1.0


def test_english_partial_overlap_by_hand():
    pred = "The fox jumped over the dog."  # the fox jumped over the dog (6)
    ref = "the dog jumped over a lazy fox"  # the dog jumped over a lazy fox (7)
    # bag overlap: the1 (ref has one) fox dog jumped over = 5 -> F1 = 2*5 / (6+7) = 10/13
    # LCS: "the jumped over" = 3 (after "over", pred has "the dog", ref "a lazy fox")
    #   -> ROUGE-L = 2*3 / 13 = 6/13
    assert token_f1(pred, ref) == pytest.approx(10 / 13)
    assert rouge_l(pred, ref) == pytest.approx(6 / 13)


def test_rouge_l_rewards_order_and_f1_does_not():
    # Same bag of words; LCS is "the cat sat" or "on the mat" = 3 of 6.
    pred, ref = "the cat sat on the mat", "on the mat the cat sat"
    assert token_f1(pred, ref) == 1.0
    assert rouge_l(pred, ref) == pytest.approx(0.5)


def test_empty_answers():
    assert token_f1("", "") == 1.0
    assert rouge_l("。", "") == 1.0  # punctuation only is empty after normalisation
    assert token_f1("", "答案") == 0.0
    assert rouge_l("answer", "") == 0.0
    assert token_f1("猫", "狗") == 0.0


@needs_sacrebleu
def test_bleu_identical_corpus_is_100():
    sents = ["the quick brown fox jumps over the lazy dog", "a b c d e f g"]
    assert bleu(sents, sents) == pytest.approx(100.0)


@needs_sacrebleu
def test_bleu_disjoint_corpus_is_zero():
    preds = ["alpha beta gamma delta epsilon"]
    refs = ["one two three four five"]
    assert bleu(preds, refs) == pytest.approx(0.0, abs=1e-6)


@needs_sacrebleu
def test_bleu_uses_zh_tokenizer_for_chinese_references():
    preds = [ZH_PRED, "今天天气很好，我们去公园散步吧"]
    refs = [ZH_REF, "今天天气不错，我们去公园走走吧"]
    import sacrebleu

    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize="zh").score
    as_words = sacrebleu.corpus_bleu(preds, [refs], tokenize="13a").score
    assert bleu(preds, refs) == pytest.approx(expected)
    assert expected > as_words  # 13a sees each unspaced Chinese run as one "word"


@needs_sacrebleu
def test_bleu_uses_13a_for_english():
    preds = ["the cat sat on the mat today", "hello there, general kenobi"]
    refs = ["the cat sat on a mat today", "hello there general kenobi!"]
    import sacrebleu

    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize="13a").score
    assert bleu(preds, refs) == pytest.approx(expected)


def test_bleu_empty_input_is_zero():
    assert bleu([], []) == 0.0


def test_bleu_without_sacrebleu_explains_the_install(monkeypatch):
    real_import = builtins.__import__

    def no_sacrebleu(name, *args, **kwargs):
        if name == "sacrebleu":
            raise ImportError("no sacrebleu")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sacrebleu)
    with pytest.raises(LmforgeError, match="pip install sacrebleu"):
        bleu(["a"], ["a"])


def test_perplexity():
    n = 7
    assert perplexity(n * math.log(2), n) == pytest.approx(2.0)
    assert perplexity(0.0, 3) == 1.0
    assert perplexity(1.0, 0) == math.inf
    assert perplexity(1e6, 1) == math.inf


@needs_sacrebleu
def test_generation_metrics_means_and_json():
    preds = [ZH_PRED, "The Cat sat on the mat."]
    refs = [ZH_REF, "the cat, sat on the MAT"]
    result = generation_metrics(preds, refs)
    assert set(result) == {"exact_match", "token_f1", "rouge_l", "bleu", "chrf", "n"}
    assert result["n"] == 2
    assert result["exact_match"] == pytest.approx(0.5)
    assert result["token_f1"] == pytest.approx((20 / 27 + 1.0) / 2)
    assert result["rouge_l"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert result["bleu"] == pytest.approx(bleu(preds, refs))
    assert all(type(result[k]) is float for k in ("exact_match", "token_f1", "rouge_l", "bleu", "chrf"))
    assert json.loads(json.dumps(result)) == result


def test_generation_metrics_empty():
    assert generation_metrics([], []) == {
        "exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0, "bleu": 0.0, "chrf": 0.0, "n": 0
    }


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        generation_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        bleu(["a"], [])
