"""task=ner end to end with tiny models: sub-word alignment, a planted entity learnt, predict offsets,
the commands (finetune/evaluate/predict/baseline), DP-SGD and POST /v1/ner."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

import lmforge
from lmforge import config
from lmforge.cli import main

FILL = ["the", "man", "went", "to", "today", "and", "saw", "a", "city", "big"]
PLACES, PEOPLE = ["paris", "berlin"], ["obama", "merkel"]
ZH_FILL = list("我们今天去了看见一个大城市")
KEY = "ner-key"


def english(rng: random.Random) -> dict:
    words, tags = rng.sample(FILL, 5), ["O"] * 5
    for name, tag in ((rng.choice(PLACES), "B-LOC"), (rng.choice(PEOPLE), "B-PER")):
        at = rng.randrange(len(words) + 1)
        words.insert(at, name)
        tags.insert(at, tag)
    return {"tokens": words, "tags": tags}


def chinese(rng: random.Random) -> dict:
    chars, at = rng.sample(ZH_FILL, 6), rng.randrange(7)
    return {"text": "".join(chars[:at]) + "北京" + "".join(chars[at:]),
            "entities": [{"start": at, "end": at + 2, "label": "LOC"}]}


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory) -> Path:
    """train.jsonl/test.jsonl mixing tokens+tags (English) and text+entities (Chinese) rows, and tok/."""
    from transformers import BertTokenizerFast

    root = tmp_path_factory.mktemp("ner")
    rng = random.Random(0)
    for name, n in (("train", 200), ("test", 40)):
        rows = [english(rng) if i % 2 else chinese(rng) for i in range(n)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    (root / "tok").mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(ZH_FILL) | set("北京")), *FILL, *PLACES, *PEOPLE,
             "##s", "visited"]
    (root / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(root / "tok").save_pretrained(root / "tok")
    return root


def ner_cfg(root: Path, out: Path, *overrides: str) -> config.Config:
    return config.load(None, ["task=ner", f"data.train={root / 'train.jsonl'}", f"data.test={root / 'test.jsonl'}",
                              "model.preset=tiny", f"model.tokenizer={root / 'tok'}", f"output_dir={out}",
                              "train.epochs=5", "train.batch_size=16", "train.lr=3e-3", "train.seed=0",
                              "train.precision=fp32", *overrides])


@pytest.fixture(scope="module")
def tagger(ner_data, tmp_path_factory) -> Path:
    from lmforge.commands import finetune

    out = tmp_path_factory.mktemp("tagger") / "run"
    finetune.run(ner_cfg(ner_data, out))
    return out


def test_first_subtoken_labelled_the_rest_ignored(ner_data, tmp_path):
    from lmforge.data.readers import Row
    from lmforge.data.tagged import parse_rows
    from lmforge.run import prepare
    from lmforge.tasks.ner import Split

    prepared = prepare(ner_cfg(ner_data, tmp_path / "run"))
    task, tok = prepared.task, prepared.tokenizer
    row = Row("x:1", {"tokens": ["obamas", "visited", "北京"], "tags": ["B-PER", "O", "B-LOC"]})
    feature = task.encode(Split("x", parse_rows([row], "text", True).sentences), tok)[0]
    pieces = tok.convert_ids_to_tokens(feature["input_ids"])
    assert pieces == ["[CLS]", "obama", "##s", "visited", "北", "京", "[SEP]"]
    names = [task.label_names[i] if i >= 0 else None for i in feature["labels"]]
    assert names == [None, "B-PER", None, "O", "B-LOC", None, None]
    assert feature["words"] == [-1, 0, -1, 1, 2, -1, -1]


def sentencepiece_tokenizer():
    """A tiny SentencePiece-style (Metaspace + Unigram) tokenizer, as XLM-R's and mT5's are."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "北", "京", "▁北京", "▁visited", "▁obama", "s"]
    core = Tokenizer(models.Unigram([(p, -1.0) for p in pieces], unk_id=3))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def test_sentencepiece_word_markers_never_carry_a_label(ner_data, tmp_path):
    """Split into words, a SentencePiece tokenizer writes each Chinese character as ["▁", "北"]: the lone
    marker is dropped, so the character itself carries the label; a cut keeps the closing token."""
    from lmforge.data.readers import Row
    from lmforge.data.tagged import parse_rows
    from lmforge.run import prepare
    from lmforge.tasks.ner import Split

    task = prepare(ner_cfg(ner_data, tmp_path / "run")).task
    tok = sentencepiece_tokenizer()
    row = Row("x:1", {"tokens": ["obamas", "visited", "北", "京"], "tags": ["B-PER", "O", "B-LOC", "I-LOC"]})
    split = Split("x", parse_rows([row], "text", True).sentences)
    feature = task.encode(split, tok)[0]
    assert tok.convert_ids_to_tokens(feature["input_ids"]) == ["<s>", "▁obama", "s", "▁visited", "北", "京", "</s>"]
    names = [task.label_names[i] if i >= 0 else None for i in feature["labels"]]
    assert names == [None, "B-PER", None, "O", "B-LOC", "I-LOC", None]
    task.cfg = dataclasses.replace(task.cfg, model=dataclasses.replace(task.cfg.model, max_length=5))
    cut = task.encode(split, tok)[0]
    assert tok.convert_ids_to_tokens(cut["input_ids"]) == ["<s>", "▁obama", "s", "▁visited", "</s>"]
    assert cut["words"] == [-1, 0, -1, 1, -1]


def test_tiny_model_learns_the_planted_entities(ner_data, tagger, tmp_path):
    import torch

    from lmforge.run import prepare
    from lmforge.runtime.forward import run_forward

    metrics = json.loads((tagger / "metrics.json").read_text())
    untrained = prepare(ner_cfg(ner_data, tmp_path / "untrained"))
    outputs = run_forward(untrained.task, untrained.model, untrained.validation, 64, torch.device("cpu"), "fp32")
    random_f1 = untrained.task.score(outputs, untrained.validation)["f1_micro"]
    assert metrics["f1_micro"] > 0.9 and random_f1 < 0.3
    assert set(metrics["per_class"]) == {"LOC", "PER"} and metrics["baseline"]["method"].startswith("CRF")
    report = (tagger / "report.html").read_text(encoding="utf-8")
    assert "Baseline (CRF, character features)" in report and "Per class" in report


def test_predict_returns_character_offsets(tagger):
    texts = ["我们去北京看见大城市", "the man saw obama in paris today"]
    records = lmforge.load(tagger / "best").predict(texts)
    found = [[(text[e["start"]:e["end"]], e["label"]) for e in r["entities"]] for text, r in zip(texts, records)]
    assert found == [[("北京", "LOC")], [("obama", "PER"), ("paris", "LOC")]]
    assert all(0 < e["score"] <= 1 for r in records for e in r["entities"])


def test_predict_command_writes_spans(tagger, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "merkel went to berlin"}\n{"text": "今天去北京"}\n', encoding="utf-8")
    for suffix in (".jsonl", ".csv"):
        assert main(["predict", str(tagger / "best"), "--input", str(source), "--output", str(tmp_path / f"o{suffix}")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [[r["text"][e["start"]:e["end"]] for e in r["entities"]] for r in rows] == [["merkel", "berlin"], ["北京"]]
    assert (tmp_path / "o.csv").read_text(encoding="utf-8").startswith("text,entities")


def test_evaluate_and_baseline_commands(ner_data, tagger, tmp_path):
    assert main(["evaluate", str(tagger / "best"), "--data", str(ner_data / "test.jsonl"), "--out",
                 str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["f1_micro"] > 0.9 and evaluated["baseline"]["method"].startswith("CRF")
    assert "Per class" in (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert main(["baseline", "task=ner", f"data.train={ner_data / 'train.jsonl'}", f"data.test={ner_data / 'test.jsonl'}",
                 f"output_dir={tmp_path / 'crf'}"]) == 0
    crf = json.loads((tmp_path / "crf" / "metrics.json").read_text())
    assert crf["method"].startswith("CRF") and crf["f1_micro"] > 0.9


def test_report_highlights_gold_and_predicted_spans(tmp_path):
    from lmforge.evaluate.report import write_report

    example = {"text": "江泽民在北京<b>", "gold_spans": [[0, 3, "PER"], [4, 6, "LOC"]], "pred_spans": [[4, 6, "ORG"]],
               "label": "", "pred": "", "confidence": None}
    write_report(tmp_path / "r.html", title="t", metrics={"f1_micro": 0.5}, errors=[example])
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<mark class="entity" title="PER">江泽民<sub>PER</sub></mark>' in page and "<sub>ORG</sub>" in page
    assert "&lt;b&gt;" in page


def test_bioes_scheme_and_dp_sgd_train(ner_data, tmp_path):
    from lmforge.run import train

    prepared, result = train(ner_cfg(ner_data, tmp_path / "dp", "ner.scheme=bioes", "train.max_steps=2",
                                     "privacy.dp.noise_multiplier=1.0"))
    assert {"S-LOC", "E-LOC", "S-PER"} <= set(prepared.task.label_names)
    assert result.steps == 2 and any("dp_epsilon" in r for r in result.history)


# ---- POST /v1/ner -----------------------------------------------------------------------------
def test_ner_endpoint(tagger):
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    app = create_app(tagger / "best", api_key=KEY, max_inputs=4, max_body_bytes=2000, precision="fp32")
    auth = {"Authorization": f"Bearer {KEY}"}
    with TestClient(app) as client:
        assert client.post("/v1/ner", json={"input": ["今天去北京"]}).status_code == 401
        assert client.post("/v1/ner", json={"input": ["北京" * 2000]}, headers=auth).status_code == 413
        assert client.post("/v1/ner", json={"input": ["x"] * 5}, headers=auth).status_code == 422
        assert client.post("/v1/ner", json={"input": ["  "]}, headers=auth).status_code == 422
        assert client.post("/v1/classify", json={"input": ["x"]}, headers=auth).status_code == 400
        reply = client.post("/v1/ner", json={"input": ["今天去北京", "obama saw paris"]}, headers=auth)
        assert reply.status_code == 200
        texts = ["今天去北京", "obama saw paris"]
        spans = [[(t[e["start"]:e["end"]], e["label"]) for e in d["entities"]] for t, d in zip(texts, reply.json()["data"])]
        assert spans == [[("北京", "LOC")], [("obama", "PER"), ("paris", "LOC")]]
