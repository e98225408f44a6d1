"""Token tagging without a model: word splitting, BIO/BIOES <-> spans, the three file formats and their
validation (file:line), entity metrics against seqeval, the CRF baseline and the People's Daily
conversion."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest

from lmforge import config
from lmforge.data.tagging import Span, join_words, spans_to_tags, split_words, tags_to_spans
from lmforge.errors import DataError
from lmforge.evaluate.entity_metrics import entity_metrics

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def words_of(text: str) -> list[str]:
    return [text[a:b] for a, b in split_words(text)]


def test_words_chinese_per_character_latin_runs_punctuation_alone():
    assert words_of("江泽民在北京。") == ["江", "泽", "民", "在", "北", "京", "。"]
    assert words_of("Obama's visit to Paris, 2009.") == ["Obama", "'", "s", "visit", "to", "Paris", ",", "2009", "."]
    assert words_of("IBM公司１９９８年") == ["IBM", "公", "司", "１９９８", "年"]


def test_join_words_keeps_chinese_unspaced():
    text, offsets = join_words(["北", "京", "is", "big"])
    assert text == "北京 is big"
    assert [text[a:b] for a, b in offsets] == ["北", "京", "is", "big"]


@pytest.mark.parametrize("scheme, tags", [
    ("bio", ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG", "I-ORG"]),
    ("bioes", ["B-PER", "E-PER", "O", "S-LOC", "O", "B-ORG", "I-ORG", "E-ORG"]),
])
def test_spans_and_tags_round_trip(scheme, tags):
    spans = [Span(0, 2, "PER"), Span(3, 4, "LOC"), Span(5, 8, "ORG")]
    assert spans_to_tags(spans, 8, scheme) == tags
    assert tags_to_spans(tags) == (spans, [])


def test_i_without_b_starts_an_entity_and_is_reported():
    spans, repaired = tags_to_spans(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "E-LOC", "E-LOC"])
    assert spans == [Span(1, 3, "PER"), Span(3, 4, "LOC"), Span(4, 6, "LOC"), Span(6, 7, "LOC")]
    assert repaired == [1, 3, 6]


@pytest.mark.parametrize("true, pred", [
    ([["B-PER", "I-PER", "O", "B-LOC"], ["O", "I-ORG", "I-ORG", "O", "B-PER"]],
     [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O", "I-PER"]]),
    ([["B-PER", "E-PER", "O", "S-LOC", "S-LOC"], ["B-ORG", "I-ORG", "E-ORG", "O", "S-PER"]],
     [["B-PER", "E-PER", "O", "S-LOC", "O"], ["B-ORG", "E-ORG", "S-ORG", "O", "S-LOC"]]),
])
def test_entity_metrics_equal_seqeval(true, pred):
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    ours = entity_metrics(true, pred)
    for average in ("micro", "macro"):
        assert ours[f"precision_{average}"] == pytest.approx(precision_score(true, pred, average=average))
        assert ours[f"recall_{average}"] == pytest.approx(recall_score(true, pred, average=average))
        assert ours[f"f1_{average}"] == pytest.approx(f1_score(true, pred, average=average))
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    for kind, scores in ours["per_class"].items():
        assert scores["f1"] == pytest.approx(report[kind]["f1-score"])
        assert scores["support"] == report[kind]["support"]
    assert ours["token_accuracy"] == pytest.approx(accuracy_score(true, pred))


def test_type_confusion_counts_wrong_types_misses_and_spurious():
    result = entity_metrics([["B-PER", "O", "B-LOC"]], [["B-LOC", "B-ORG", "O"]])
    labels, matrix = result["confusion_matrix"]["labels"], result["confusion_matrix"]["matrix"]
    cell = {(labels[i], labels[j]): n for i, row in enumerate(matrix) for j, n in enumerate(row) if n}
    assert cell == {("PER", "LOC"): 1, ("LOC", "O"): 1, ("O", "ORG"): 1}


# ---- the three formats ------------------------------------------------------------------------
def ner_task(tmp_path: Path, train: Path, *overrides: str):
    from lmforge.tasks import build_task

    cfg = config.load(None, ["task=ner", f"data.train={train}", f"output_dir={tmp_path / 'run'}", *overrides])
    return build_task("ner", cfg)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_every_format_reads_to_the_same_sentence(tmp_path):
    conll = tmp_path / "a.conll"
    conll.write_text("-DOCSTART- O\n\n江\tB-PER\n泽\tI-PER\n民\tI-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n", encoding="utf-8")
    tokens = write_jsonl(tmp_path / "b.jsonl", [{"tokens": list("江泽民在北京"),
                                                  "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]}])
    spans = write_jsonl(tmp_path / "c.jsonl", [{"text": "江泽民在北京", "entities": [
        {"start": 0, "end": 3, "label": "PER"}, {"start": 4, "end": 6, "label": "LOC"}]}])
    task = ner_task(tmp_path, conll)
    read = [task._read(str(p), [], labelled=True).sentences[0] for p in (conll, tokens, spans)]
    assert {(s.text, tuple(s.words), tuple(s.spans)) for s in read} == {
        ("江泽民在北京", tuple((i, i + 1) for i in range(6)), (Span(0, 3, "PER"), Span(4, 6, "LOC")))}
    assert read[0].location == f"{conll}:3"


@pytest.mark.parametrize("lines, where, message", [
    ([{"tokens": ["a", "b"], "tags": ["O"]}], 1, "2 tokens but 1 tags"),
    ([{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["Paris"], "tags": ["X-LOC"]}], 2, "tag 'X-LOC' is not"),
    ([{"text": "北京", "entities": [{"start": 0, "end": 3, "label": "LOC"}]}], 1, "out of range"),
    ([{"text": "北京大学", "entities": [{"start": 0, "end": 2, "label": "LOC"},
                                       {"start": 1, "end": 4, "label": "ORG"}]}], 1, "overlap"),
    ([{"text": "in Paris", "entities": [{"start": 3, "end": 6, "label": "LOC"}]}], 1, "inside a word"),
    ([{"text": "in Paris"}], 1, "expected a list"),
    ([{"sentence": "x"}], 1, "expected 'tokens' + 'tags'"),
])
def test_jsonl_problems_name_file_and_line(tmp_path, lines, where, message):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError, match=f"{re.escape(str(path))}:{where}.*{re.escape(message)}"):
        ner_task(tmp_path, path).load_data()


def test_conll_problems_name_the_token_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU B-ORG\nrejects O\n\nGerman\n\nPeter B-PER\nBlackburn J-PER\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        ner_task(tmp_path, path).load_data()
    assert f"{path}:4: expected a token and a tag" in str(err.value)
    path.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn J-PER\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:5 \\[tags\\]: token 2 'Blackburn': tag 'J-PER'"):
        ner_task(tmp_path, path).load_data()


def test_i_without_b_is_fixed_with_a_warning(tmp_path, caplog):
    path = tmp_path / "iob1.conll"
    path.write_text("".join(f"{w} {t}\n" for w, t in [("EU", "I-ORG"), ("rejects", "O"), ("German", "I-MISC"),
                                                         ("", ""), ("Peter", "I-PER"), ("Blackburn", "I-PER")]))
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        train = ner_task(tmp_path, path, "data.validation=" + str(path)).load_data().train
    assert [s.spans for s in train.sentences] == [[Span(0, 1, "ORG"), Span(2, 3, "MISC")], [Span(0, 2, "PER")]]
    assert "3 I-/E- tags without a B-" in caplog.text and f"{path}:1" in caplog.text


def test_unseen_type_in_test_is_refused(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"tokens": ["Paris"], "tags": ["B-LOC"]}])
    test = write_jsonl(tmp_path / "x.jsonl", [{"tokens": ["Obama"], "tags": ["B-PER"]}])
    with pytest.raises(DataError, match=f"{test}:1.*'PER' never appears"):
        ner_task(tmp_path, train, f"data.validation={train}", f"data.test={test}").load_data()


# ---- the CRF baseline -------------------------------------------------------------------------
def test_crf_beats_a_trivial_tagger():
    import random

    from lmforge.evaluate.crf import crf_tags

    rng = random.Random(0)
    def sentence():
        words = [rng.choice(["we", "saw", "the", "city", "of", "near", "today"]) for _ in range(6)]
        i = rng.randrange(5)
        words[i:i + 2] = ["in", rng.choice(["Paris", "Rome", "Oslo", "Lima"])]
        return words, ["O"] * i + ["O", "B-LOC"] + ["O"] * (4 - i)
    train, test = [sentence() for _ in range(80)], [sentence() for _ in range(20)]
    truth = [t for _, t in test]
    crf = entity_metrics(truth, crf_tags([w for w, _ in train], [t for _, t in train], [w for w, _ in test]))
    trivial = entity_metrics(truth, [["O"] * len(t) for t in truth])
    assert crf["f1_micro"] > 0.9 > trivial["f1_micro"]


# ---- People's Daily -----------------------------------------------------------------------------
@pytest.fixture
def people_daily(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import prepare_zh_ner

    yield prepare_zh_ner
    sys.modules.pop("prepare_zh_ner", None)


def test_people_daily_conversion(people_daily):
    lines = [
        "19980101-01-001-001/m  迈向/v  新/a  世纪/n",
        "19980101-01-001-002/m  [中央/n  人民/n  广播/vn  电台/n]nt  记者/n  江/nr  泽民/nr  在/p  北京/ns  。/w",
        "19980101-01-002-001/m  江/nr  泽民/nr  李/nr  鹏/nr  会见/v  克林顿/nr  和/c  新华社/nt  记者/n  。/w",
    ]
    paras = people_daily.paragraphs(lines)
    assert [p.doc for p in paras] == ["19980101-01-001", "19980101-01-001", "19980101-01-002"]
    found = [[(p.text[s:e], t) for s, e, t in p.entities] for p in paras]
    assert found[1] == [("中央人民广播电台", "ORG"), ("江泽民", "PER"), ("北京", "LOC")]
    assert found[2] == [("江泽民", "PER"), ("李鹏", "PER"), ("克林顿", "PER"), ("新华社", "ORG")]


def test_people_daily_articles_inferred_without_ids_and_sentences_cut(people_daily):
    lines = ["迈向/v  新/a  世纪/n", "中共中央/nt  总书记/n", "（/w  一九九七年/t  ）/w",
             "江/nr  泽民/nr  讲话/v  。/w  他/r  说/v  ：/w  “/w  好/a  。/w  ”/w  北京/ns  很/d  冷/a  。/w",
             "（/w  新华社/nt  记者/n  摄/Vg  ）/w", "北京/ns  举行/v  音乐会/n", "今晚/t  很/d  好/a  。/w"]
    paras = people_daily.paragraphs(lines)
    assert [p.doc for p in paras] == ["article-00000"] * 5 + ["article-00001"] * 2
    pieces = people_daily.sentences(paras[3])
    assert [p.text for p in pieces] == ["江泽民讲话。", "他说：“好。”", "北京很冷。"]
    assert [(p.text[s:e], t) for p in pieces for s, e, t in p.entities] == [("江泽民", "PER"), ("北京", "LOC")]
