"""Pretraining: corpus cleaning, tokenizer training, token shards, masking, and the objectives on the loop."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from lmforge import config
from lmforge.commands import pretrain
from lmforge.data.corpus import build_corpus, load_texts
from lmforge.data.dedup import SeenKeys, near_keys
from lmforge.data.normalize import language, normalize
from lmforge.data.shards import open_blocks, write_tokens
from lmforge.errors import LmforgeError
from lmforge.models.tokenizer_train import train_tokenizer
from lmforge.tasks import build_task
from lmforge.tasks.pretrain import COLLAPSED_SIMILARITY, mask_tokens, token_similarity

WORDS = "今天 天气 很好 我们 去 公园 散步 学习 机器 模型 数据 中国 人民 经济 发展 the model learns from data".split()


def _documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))) + "。" for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """raw/ (a .txt, a .jsonl.gz and a binary file), corpus/ built from it, and tok/ + bpe/ tokenizers."""
    root = tmp_path_factory.mktemp("pretrain")
    raw = root / "raw"
    raw.mkdir()
    docs = _documents(300)
    (raw / "a.txt").write_text("\n".join(docs[:200]) + "\n", encoding="utf-8")
    lines = "\n".join(json.dumps({"text": d}, ensure_ascii=False) for d in docs[200:] + docs[:5])  # 5 duplicates
    (raw / "b.jsonl.gz").write_bytes(gzip.compress(lines.encode("utf-8")))
    (raw / "c.txt").write_bytes(b"\x00\x01\x02binary")
    build_corpus([str(raw)], root / "corpus")
    texts = load_texts(str(root / "corpus"))
    train_tokenizer(texts, root / "tok", "wordpiece", 300)
    train_tokenizer(texts, root / "bpe", "bpe", 400)
    return root


# ---- corpus -----------------------------------------------------------------------------------

def test_normalize_keeps_chinese_punctuation_and_fixes_width():
    assert normalize("１２月　３１日，中共中央  总书记 、国家") == "12月 31日，中共中央总书记、国家"
    assert normalize("Hello，world！") == "Hello,world!"  # full-width after Latin becomes ASCII
    assert normalize("你好,世界") == "你好，世界"  # ASCII between CJK becomes full-width
    assert normalize("ＡＢＣ\x07\u200b  x\r\n\n\n\nnext") == "ABC x\n\nnext"
    assert (language("今天天气很好"), language("the weather"), language("今天 weather 很好 good")) == ("zh", "en", "mixed")


def test_near_duplicates_catch_small_edits_only(tmp_path):
    base = ("人民日报一九九八年一月一日发表新年社论，回顾过去一年的经济发展和社会进步，展望新的一年。"
            "社论指出，改革开放二十年来，国民经济持续快速健康发展，人民生活水平显著提高。")
    other = "三国演义第一回宴桃园豪杰三结义斩黄巾英雄首立功，滚滚长江东逝水，浪花淘尽英雄。"
    texts = [base, base.replace("一月一日", "一月二日"), other]
    index = SeenKeys(tmp_path / "near.sqlite")
    assert index.first_seen(near_keys(texts[:1])) == [True]
    assert index.first_seen(near_keys(texts[1:])) == [False, True]  # the earlier call's keys are on disk
    assert SeenKeys(tmp_path / "other.sqlite").first_seen(near_keys(texts)) == [True, False, True]  # one batch


def test_corpus_build_is_the_same_with_one_or_two_workers(tmp_path):
    docs = _documents(400, seed=1)
    raw = tmp_path / "raw"
    raw.mkdir()
    for n in range(4):  # four files sharing documents, some with a one-character edit: work for both dedups
        edited = [d.replace("。", "！") if (i + n) % 3 == 0 else d for i, d in enumerate(docs[n * 50:n * 50 + 200])]
        (raw / f"{n}.txt").write_text("\n".join(edited) + "\n", encoding="utf-8")
    one = build_corpus([str(raw)], tmp_path / "one", dedup="minhash", workers=1)
    two = build_corpus([str(raw)], tmp_path / "two", dedup="minhash", workers=2)
    assert (tmp_path / "one" / "docs.jsonl").read_bytes() == (tmp_path / "two" / "docs.jsonl").read_bytes()
    assert one.as_dict() == two.as_dict()
    assert one.dropped["exact_duplicate"] > 0 and one.dropped["near_duplicate"] > 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["docs.jsonl", "stats.json"]  # no index left


def test_corpus_build_dedups_skips_bad_files_and_reports(corpus):
    stats = json.loads((corpus / "corpus" / "stats.json").read_text())
    assert stats["documents_read"] == 305 and stats["dropped"] == {"exact_duplicate": 5}
    assert stats["documents_kept"] == 300 and stats["duplicate_rate"] == round(5 / 305, 4)
    assert list(stats["bad_files"]) == [str(corpus / "raw" / "c.txt")]
    assert sum(stats["languages"].values()) == 300
    with pytest.raises(LmforgeError, match="c.txt: binary file"):
        build_corpus([str(corpus / "raw")], corpus / "strict", strict=True)
    assert not (corpus / "strict").exists()


def test_corpus_names_a_file_in_the_wrong_encoding(tmp_path):
    (tmp_path / "gbk.txt").write_bytes(("中文文本" * 50).encode("gb18030"))
    with pytest.raises(LmforgeError, match=r"gbk.txt:1: cannot decode as utf-8.*--encoding="):
        build_corpus([str(tmp_path / "gbk.txt")], tmp_path / "out", strict=True)
    stats = build_corpus([str(tmp_path / "gbk.txt")], tmp_path / "out", encoding="gb18030", min_chars=1)
    assert stats.documents_kept == 1


# ---- tokenizer and shards ---------------------------------------------------------------------

def test_trained_tokenizers_split_cjk_and_load_with_transformers(corpus):
    from transformers import AutoTokenizer

    wordpiece = AutoTokenizer.from_pretrained(corpus / "tok")
    assert wordpiece.is_fast and wordpiece.mask_token == "[MASK]"
    assert wordpiece.tokenize("今天天气") == ["今", "天", "天", "气"]  # one token per CJK character
    report = json.loads((corpus / "tok" / "tokenizer_report.json").read_text())
    assert report["unknown_rate"] < 0.01 and 0 < report["tokens_per_character"] < 1.5
    bpe = AutoTokenizer.from_pretrained(corpus / "bpe")
    ids = bpe("今天天气 model", add_special_tokens=False)["input_ids"]
    assert bpe.decode(ids) == "今天天气 model" and bpe.unk_token_id not in ids


def test_token_file_round_trip_and_reuse(corpus, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(corpus / "tok")
    texts = ["今天天气很好", "我们去公园"]
    meta = write_tokens(texts, tok, tmp_path / "t.bin", tok.sep_token_id, word_starts=True)
    expected = sum((tok(t, add_special_tokens=False)["input_ids"] + [tok.sep_token_id] for t in texts), [])
    assert meta["dtype"] == "uint16" and meta["tokens"] == len(expected)
    assert np.fromfile(tmp_path / "t.bin", dtype=np.uint16).tolist() == expected
    blocks = open_blocks(tmp_path / "t.bin", "uint16", 4, word_starts=True)
    assert len(blocks) == len(expected) // 4 and blocks[1]["input_ids"].tolist() == expected[4:8]
    # jieba: 今天天气|很|好|[SEP]|我们|去|公园|[SEP]
    assert [b["word_starts"].tolist() for b in blocks] == [[1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]]
    (tmp_path / "t.bin").write_bytes(b"")  # a matching meta reuses the file as it is
    assert write_tokens(texts, tok, tmp_path / "t.bin", tok.sep_token_id, word_starts=True) == meta
    assert (tmp_path / "t.bin").stat().st_size == 0


def test_token_file_streams_a_built_corpus_the_same_with_two_workers(corpus, tmp_path):
    from transformers import AutoTokenizer

    from lmforge.data.corpus import CorpusTexts, Subset

    tok = AutoTokenizer.from_pretrained(corpus / "tok")
    texts = load_texts(str(corpus / "corpus"))
    assert isinstance(texts, CorpusTexts) and len(texts) == 300  # read from disk on demand
    picked = Subset(texts, list(range(0, 300, 2)))
    assert picked[1] == texts[2] and list(picked)[:2] == [texts[0], texts[2]]
    one = write_tokens(picked, tok, tmp_path / "one.bin", tok.sep_token_id, word_starts=True, workers=1)
    two = write_tokens(picked, tok, tmp_path / "two.bin", tok.sep_token_id, word_starts=True, workers=2)
    assert one == two and one["documents"] == 150
    for suffix in (".bin", ".words"):
        assert (tmp_path / f"one{suffix}").read_bytes() == (tmp_path / f"two{suffix}").read_bytes()
    expected = tok(list(picked), add_special_tokens=False)["input_ids"]
    assert one["tokens"] == sum(len(ids) + 1 for ids in expected)


# ---- masking ----------------------------------------------------------------------------------

def test_mlm_masking_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (400, 128), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False  # [CLS] ... [SEP]
    inputs, labels = mask_tokens(ids, maskable, 0.15, mask_id=4, vocab_size=1000, generator=g)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert abs(chosen.float().mean().item() / (126 / 128) - 0.15) < 0.005
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (inputs[chosen] == 4).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01  # the rest (~10%) are random tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_whole_word_masking_masks_words_together():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 1000, (200, 60), generator=g)
    starts = torch.zeros_like(ids)
    starts[:, ::3] = 1  # words of three tokens
    _, labels = mask_tokens(ids, torch.ones_like(ids, dtype=torch.bool), 0.15, 4, 1000, starts, g)
    words = (labels != -100).view(200, 20, 3)
    assert torch.equal(words.all(-1), words.any(-1))  # every word fully masked or not at all
    assert abs(words.all(-1).float().mean().item() - 0.15) < 0.02


# ---- objectives on the loop -------------------------------------------------------------------

def _cfg(corpus: Path, out: Path, *extra: str) -> config.Config:
    return config.load(None, [f"data.train={corpus / 'corpus'}", "model.preset=tiny", f"model.tokenizer={corpus / 'tok'}",
                              f"output_dir={out}", "model.max_length=32", "train.batch_size=8", "train.lr=3e-3",
                              "train.seed=0", "train.precision=fp32", "train.warmup_ratio=0", "data.validation_fraction=0.1",
                              *extra])


@pytest.mark.parametrize("objective, tokenizer, auto", [("mlm", "tok", "AutoModelForMaskedLM"),
                                                        ("clm", "bpe", "AutoModelForCausalLM")])
def test_pretraining_lowers_loss_and_saves_a_standard_folder(corpus, tmp_path, objective, tokenizer, auto):
    import transformers

    cfg = _cfg(corpus, tmp_path / "run", f"objective={objective}", f"model.tokenizer={corpus / tokenizer}",
               "train.max_steps=40", "train.eval_every=20")
    metrics = pretrain.run(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in log if "eval_loss" in r]
    assert len(evals) == 2 and evals[-1] < evals[0] < np.log(cfg_vocab(corpus / tokenizer)) + 0.5
    block = 30 if objective == "mlm" else 32  # MLM blocks leave room for [CLS] and [SEP]
    assert 36 * 8 * block <= metrics["tokens_trained"] <= 40 * 8 * block  # epoch ends may cut a batch short
    assert metrics["tokens_trained"] % block == 0
    assert 0 < metrics["mfu"] < 1 and metrics["tokens_per_s"] > 0
    model = getattr(transformers, auto).from_pretrained(tmp_path / "run" / "final")
    assert type(model).__name__ == ("BertForMaskedLM" if objective == "mlm" else "LlamaForCausalLM")
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def cfg_vocab(folder: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(folder))


def test_sparse_mlm_head_loss_equals_full_logits(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path / "run")
    task = build_task("pretrain", cfg)
    model, tok = task.build_model(None)
    task.bind(model, tok)
    model.eval()  # no dropout: both passes must see the same network
    batch = task.masked(torch.randint(5, len(tok), (4, 30)), None, torch.Generator().manual_seed(0))
    full = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    chosen = (batch["labels"] != -100).sum()
    torch.testing.assert_close(task.loss(model, batch) / chosen, full, rtol=1e-5, atol=1e-6)


def test_resume_mid_pretraining_matches_uninterrupted(corpus, tmp_path, interrupted):
    args = ("train.max_steps=12", "train.save_every=4", "train.eval_every=6")
    pretrain.run(_cfg(corpus, tmp_path / "straight", *args))
    out = tmp_path / "killed"
    task_cls = type(build_task("pretrain", _cfg(corpus, out)))
    interrupted(task_cls, 10, lambda: pretrain.run(_cfg(corpus, out, *args)))  # dies in step 11
    pretrain.run(_cfg(corpus, out, *args, "train.resume=true"))
    from safetensors.torch import load_file

    straight = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    resumed = load_file(out / "final" / "model.safetensors")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_token_budget_and_finetune_from_pretrained(corpus, tiny, tmp_path):
    from lmforge.commands import finetune

    metrics = pretrain.run(_cfg(corpus, tmp_path / "pt", "train.max_tokens=2000", "train.epochs=50"))
    assert metrics["stopped"] == "max_tokens" and 2000 <= metrics["tokens_trained"] < 2000 + 8 * 30
    cfg = config.load(None, [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}",
                             f"model.path={tmp_path / 'pt' / 'final'}", f"output_dir={tmp_path / 'ft'}",
                             "train.epochs=1", "train.batch_size=16", "train.precision=fp32"])
    finetune.run(cfg)
    # the classifier's encoder started from the pretrained weights: the position table (which the 2-row
    # fixture's fine-tuning moves little) is far closer to the pretrained one than to a fresh draw
    from safetensors.torch import load_file

    name = "bert.embeddings.position_embeddings.weight"
    tuned, pretrained = load_file(tmp_path / "ft" / "best" / "model.safetensors")[name], \
        load_file(tmp_path / "pt" / "final" / "model.safetensors")[name]
    assert (tuned - pretrained).abs().mean() < 0.1 * pretrained.abs().mean()


def test_a_pretraining_folder_evaluates_and_loads(corpus, tmp_path):
    """`lmforge evaluate` and `lmforge.load` work on what pretraining writes: perplexity on a corpus,
    tokenised in memory (nothing is written into the run folder)."""
    import lmforge
    from lmforge.cli import main

    pretrain.run(_cfg(corpus, tmp_path / "run", "train.max_steps=30", "train.eval_every=30"))
    before = sorted(p.name for p in (tmp_path / "run" / "tokens").iterdir())
    assert main(["evaluate", str(tmp_path / "run" / "final"), "--data", str(corpus / "corpus"),
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]))
    assert metrics["perplexity"] < 0.5 * cfg_vocab(corpus / "tok")  # trained: far better than uniform
    assert metrics["tokens_scored"] > 100 and "baseline" not in metrics
    assert sorted(p.name for p in (tmp_path / "run" / "tokens").iterdir()) == before
    loaded = lmforge.load(tmp_path / "run" / "final")
    assert loaded.task.name == "pretrain" and type(loaded.model).__name__ == "BertForMaskedLM"


def test_token_similarity_by_hand():
    """Blocks' sums of unit vectors: two positions along e1 in one block, one along e2 in another. Of
    the 6 ordered pairs, the two (e1, e1) have cosine 1, the rest 0: mean 1/3."""
    assert token_similarity(np.array([[2.0, 0.0], [0.0, 1.0]]), 3) == pytest.approx(1 / 3)
    assert token_similarity(np.array([[3.0, 0.0]]), 3) == pytest.approx(1.0)


def test_a_collapsed_encoder_is_said_at_evaluation_and_in_its_report(corpus, tmp_path):
    """An encoder whose output layer sees the same vector at every position (the unigram plateau) is
    flagged: zeroing the MLM transform's weight makes its output a constant, whatever the input."""
    from safetensors.torch import load_file, save_file

    from lmforge.cli import main

    def evaluate(out: str) -> dict:
        assert main(["evaluate", str(tmp_path / "run" / "final"), "--data", str(corpus / "corpus"),
                     "--out", str(tmp_path / out)]) == 0
        return json.loads((tmp_path / out / "metrics.json").read_text())

    pretrain.run(_cfg(corpus, tmp_path / "run", "train.max_steps=2", "train.lr=1e-12"))  # random weights
    healthy = evaluate("eval-random")
    assert healthy["token_similarity"] < COLLAPSED_SIMILARITY and healthy["warnings"] == []
    weights = tmp_path / "run" / "final" / "model.safetensors"
    state = load_file(weights)
    state["cls.predictions.transform.dense.weight"].zero_()
    save_file(state, weights, metadata={"format": "pt"})
    metrics = evaluate("eval")
    assert metrics["token_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(metrics["warnings"]) == 1 and metrics["warnings"][0].startswith("COLLAPSED")
    assert "COLLAPSED" in (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")


def test_pretraining_reads_through_the_data_path(corpus, tmp_path):
    """data.redact_pii and data.key_file apply to corpora as to tables: e-mails never reach the token
    file, and an encrypted corpus trains with its key."""
    from lmforge.privacy.crypto import encrypt_file, new_key_file

    docs = [f"{d} 联系 user{i}@example.com 获取" for i, d in enumerate(_documents(60, seed=3))]
    plain = tmp_path / "mail.txt"
    plain.write_text("\n".join(docs) + "\n", encoding="utf-8")
    key = tmp_path / "key"
    new_key_file(key)
    encrypt_file(plain, tmp_path / "mail.txt.enc", key)
    for name, extra in (("redacted", [f"data.train={plain}", "data.redact_pii=true"]),
                        ("encrypted", [f"data.train={tmp_path / 'mail.txt.enc'}", f"data.key_file={key}"])):
        pretrain.run(_cfg(corpus, tmp_path / name, "objective=clm", f"model.tokenizer={corpus / 'bpe'}",
                          "train.max_steps=2", *extra))
    tok = AutoTokenizer.from_pretrained(corpus / "bpe")  # byte-level: decoding gives the text back exactly

    def trained_text(name: str) -> str:
        return tok.decode(np.fromfile(tmp_path / name / "tokens" / "train.bin", dtype=np.uint16))

    assert "@example.com" not in trained_text("redacted") and "[EMAIL]" in trained_text("redacted")
    assert "@example.com" in trained_text("encrypted")


def test_pretraining_runs_without_dropout_and_saves_the_models_own_rate(corpus, tmp_path):
    from lmforge.run import prepare

    prepared = prepare(_cfg(corpus, tmp_path / "run", "task=pretrain", "train.max_steps=2"))
    rates = {m.p for m in prepared.model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.0}
    assert prepared.model.config.hidden_dropout_prob == 0.1  # what the saved folder fine-tunes with
    kept = prepare(_cfg(corpus, tmp_path / "run2", "task=pretrain", "pretrain.dropout=0.1"))
    assert {m.p for m in kept.model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
