"""Translation on the generation task: formats, aligned files, source-free loss for decoders and
encoder-decoders, a tiny Marian model trained and used end to end, BLEU/chrF++ and the baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lmforge import config
from lmforge.cli import main
from lmforge.errors import DataError, LmforgeError
from lmforge.tasks.generation import Generation

PAIRS = [("我爱你。", "I love you."), ("今天天气很好。", "The weather is nice today."),
         ("你叫什么名字？", "What is your name?"), ("谢谢你的帮助。", "Thank you for your help."),
         ("我们去吃饭吧。", "Let's go and eat."), ("这本书很有意思。", "This book is interesting.")]
PROMPT = "Translate Chinese to English:\n{}"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """train.jsonl (source/target + languages), the same pairs as train.zh/train.en and as a CSV."""
    root = tmp_path_factory.mktemp("mt")
    _jsonl(root / "train.jsonl", [{"source": zh, "target": en, "src_lang": "zh", "tgt_lang": "en"}
                                  for zh, en in PAIRS] * 4)
    (root / "train.zh").write_text("".join(zh + "\n" for zh, _ in PAIRS), encoding="utf-8")
    (root / "train.en").write_text("".join(en + "\n" for _, en in PAIRS), encoding="utf-8")
    (root / "train.csv").write_text("source,target\n" + "".join(f"{zh},{en}\n" for zh, en in PAIRS),
                                    encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer that ends every encoded text with </s>, as Marian's and T5's do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([f"{PROMPT.format(zh)} {en}" for zh, en in PAIRS] * 5, trainer)
    bpe.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    return folder


def _marian(tok: Path, folder: Path, seed: int = 0) -> Path:
    """A 2-layer Marian model with hidden size 32 and random weights, saved with the tokenizer."""
    from transformers import AutoTokenizer, MarianConfig, MarianMTModel

    tokenizer = AutoTokenizer.from_pretrained(tok)
    torch.manual_seed(seed)
    model = MarianMTModel(MarianConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1, dropout=0.0))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _t5(tok: Path, folder: Path) -> Path:
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tok)
    torch.manual_seed(0)
    T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                        num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                                        dropout_rate=0.0)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def marian(tok, tmp_path_factory) -> Path:
    return _marian(tok, tmp_path_factory.mktemp("marian"))


def _task(*overrides: str) -> Generation:
    return Generation(config.load(None, ["task=generation", *overrides]))


# ---- data -------------------------------------------------------------------------------------------
def test_every_format_gives_the_same_conversations(data):
    expected = [[{"role": "user", "content": PROMPT.format(zh)}, {"role": "assistant", "content": en}]
                for zh, en in PAIRS]
    assert _task().read_split(str(data / "train.jsonl")).conversations == expected * 4
    pair = _task().read_split(f"{data / 'train.zh'},{data / 'train.en'}")
    assert pair.conversations == expected and pair.locations[1] == f"{data / 'train.zh'}:2"
    csv = _task("generation.src_lang=zh", "generation.tgt_lang=en").read_split(str(data / "train.csv"))
    assert csv.conversations == expected
    marian = _task("generation.translation_prompt={source}").read_split(str(data / "train.jsonl"))
    assert marian.conversations[0][0]["content"] == PAIRS[0][0]


def test_each_row_names_its_own_direction(tmp_path):
    path = _jsonl(tmp_path / "both.jsonl", [{"source": "我爱你。", "target": "I love you.", "src_lang": "zh",
                                             "tgt_lang": "en"},
                                            {"source": "I love you.", "target": "我爱你。", "src_lang": "en",
                                             "tgt_lang": "zh-Hans"}])
    prompts = [c[0]["content"] for c in _task().read_split(str(path)).conversations]
    assert prompts == ["Translate Chinese to English:\n我爱你。", "Translate English to Chinese:\nI love you."]


def test_misaligned_files_are_refused_naming_both(data, tmp_path):
    (tmp_path / "short.en").write_text("I love you.\n", encoding="utf-8")
    with pytest.raises(LmforgeError, match=re.escape(f"{data / 'train.zh'} has {len(PAIRS)} lines but "
                                                     f"{tmp_path / 'short.en'} has 1")):
        _task().read_split(f"{data / 'train.zh'},{tmp_path / 'short.en'}")
    (tmp_path / "gap.en").write_text("a\n\nc\n", encoding="utf-8")
    (tmp_path / "gap.zh").write_text("一\n二\n三\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'gap.en'}:2: empty line")):
        _task().read_split(f"{tmp_path / 'gap.zh'},{tmp_path / 'gap.en'}")


def test_bad_rows_and_settings_are_refused(tmp_path, data, tiny_cfg):
    path = _jsonl(tmp_path / "bad.jsonl", [{"source": "我爱你。", "target": ""}, {"source": 3, "target": "x"}])
    with pytest.raises(DataError) as err:
        _task().read_split(str(path))
    assert f"{path}:1 [target]: empty target" in str(err.value) and f"{path}:2 [source]" in str(err.value)
    assert "none is given: add a src_lang column or set generation.src_lang" in str(err.value)
    with pytest.raises(LmforgeError, match=re.escape("unknown placeholder {text}")):
        _task("generation.translation_prompt={text}").read_split(str(data / "train.jsonl"))
    qa = _jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(LmforgeError, match="generation.src_lang applies to translation data"):
        _task("generation.src_lang=zh").read_split(str(qa))
    from lmforge.run import prepare

    with pytest.raises(LmforgeError, match="generation.translation_prompt"):
        prepare(tiny_cfg("generation.translation_prompt={source}"))  # a classifier reads no generation keys


# ---- loss ---------------------------------------------------------------------------------------------
def test_a_decoder_takes_no_loss_on_the_source(data, tok):
    from transformers import AutoTokenizer

    from lmforge.decoding import ensure_template, prompt_text

    task = _task()
    tokenizer = AutoTokenizer.from_pretrained(tok)
    ensure_template(tokenizer, "plain")
    split = task.read_split(f"{data / 'train.zh'},{data / 'train.en'}")
    feature = task.encode(split, tokenizer)[1]
    prompt = tokenizer(prompt_text(tokenizer, split.conversations[1][:-1]), add_special_tokens=False)["input_ids"]
    assert feature["input_ids"][: len(prompt)] == prompt
    assert set(feature["labels"][: len(prompt)]) == {-100}  # every source (and template) position
    labelled = [t for t in feature["labels"] if t != -100]
    assert tokenizer.decode(labelled).strip() == PAIRS[1][1] + "</s>"


@pytest.mark.parametrize("build", [_marian, _t5])
def test_an_encoder_decoder_takes_loss_on_the_target_only(data, tok, tmp_path, build):
    import lmforge

    folder = build(tok, tmp_path / "m")
    loaded = lmforge.load(folder, precision="fp32")
    task = loaded.task
    split = task.read_split(str(data / "train.jsonl"))
    features = task.encode(split, loaded.tokenizer)
    target = loaded.tokenizer(text_target=PAIRS[2][1])["input_ids"]
    assert features[2]["labels"] == target and target[-1] == loaded.tokenizer.eos_token_id  # no source token
    assert features[2]["decoder_input_ids"] == [0, *target[:-1]]
    model = loaded.model
    alone = task.losses(model, task.collate([features[2]]))
    # Beside a longer prompt and a longer answer, this example is padded on both sides; its loss must not move.
    long = {**features[1], "input_ids": features[1]["input_ids"] * 3, "labels": features[1]["labels"] * 3,
            "decoder_input_ids": [0, *(features[1]["labels"] * 3)[:-1]]}
    batch = task.collate([features[2], long])
    assert batch["input_ids"].shape[1] > 16 and batch["labels"].shape[1] > 16
    torch.testing.assert_close(task.losses(model, batch)[0], alone[0], atol=1e-5, rtol=1e-5)
    # A different source changes the loss only through the encoder, never as a label.
    other = {**features[2], "input_ids": features[0]["input_ids"]}
    assert task.collate([other])["labels"].tolist() == task.collate([features[2]])["labels"].tolist()
    two_turns = task.conversation_split([[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]])
    with pytest.raises(LmforgeError, match="<input>:0: an encoder-decoder model reads one prompt"):
        task.encode(two_turns, loaded.tokenizer)
    # The summed loss is the model's own cross-entropy over the target tokens.
    one = task.collate([features[2]])
    labels = one["labels"].clone()
    reference = model(input_ids=one["input_ids"], attention_mask=one["attention_mask"], labels=labels).loss
    torch.testing.assert_close(alone[0] / len(target), reference, atol=1e-5, rtol=1e-5)


# ---- a tiny encoder-decoder end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(data, marian, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mt_run") / "run"
    assert main(["finetune", "task=generation", f"data.train={data / 'train.jsonl'}",
                 f"data.validation={data / 'train.zh'},{data / 'train.en'}", f"model.path={marian}",
                 f"output_dir={out}", "train.batch_size=8", "train.lr=5e-3", "train.epochs=60", "train.eval_every=90",
                 "train.schedule=constant", "train.max_grad_norm=1", "train.seed=0", "train.precision=fp32",
                 "train.warmup_ratio=0", "generation.max_new_tokens=24"]) == 0
    return out


def test_a_tiny_marian_learns_and_is_scored_against_the_baseline(trained):
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in log if "train_loss" in r]
    assert losses[-1] < losses[0] / 5, losses
    metrics = json.loads((trained / "metrics.json").read_text())
    last_eval = [r["eval_loss"] for r in log if "eval_loss" in r][-1]
    assert metrics["loss"] == pytest.approx(last_eval, rel=1e-4)  # the saved model is the trained one
    assert metrics["chrf"] > 80 and metrics["bleu"] > 50, metrics  # memorising six pairs, greedy answers stop at </s>
    assert metrics["baseline"]["chrf"] == pytest.approx(100.0)  # the test pairs are the training pairs
    report = (trained / "report.html").read_text(encoding="utf-8")
    assert "Baseline (answer of the nearest training prompt" in report and "chrF++" in report
    assert "<td class=\"text\">Translate Chinese to English:\n今天天气很好。</td>" in report


def test_generate_evaluate_and_chat_on_the_trained_model(trained, data, tmp_path):
    """The one decoding path: `generate`, the Python API, the server's completion and its stream agree."""
    import threading

    import lmforge
    from lmforge.serve.engine import Engine, Job

    sources = _jsonl(tmp_path / "q.jsonl", [{"question": PROMPT.format(zh)} for zh, _ in PAIRS])
    out = tmp_path / "a.jsonl"
    assert main(["generate", str(trained / "best"), "--input", str(sources), "--output", str(out)]) == 0
    answers = [json.loads(line)["answer"] for line in out.read_text(encoding="utf-8").splitlines()]
    loaded = lmforge.load(trained / "best", precision="fp32")
    assert loaded.generate([PROMPT.format(zh) for zh, _ in PAIRS]) == answers
    assert sum(a == en for a, (_, en) in zip(answers, PAIRS)) >= 3, answers
    assert main(["evaluate", str(trained / "best"), "--data", f"{data / 'train.zh'},{data / 'train.en'}",
                 "--out", str(tmp_path / "eval")]) == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scored["chrf"] == json.loads((trained / "metrics.json").read_text())["chrf"] and "baseline" in scored
    engine = Engine(loaded, "best")
    prompt = engine.chat_prompt([{"role": "user", "content": PROMPT.format(PAIRS[3][0])}])
    assert prompt == PROMPT.format(PAIRS[3][0])  # an encoder reads the prompt itself, no turn markers
    cfg = engine.config(24, None, None, None)
    done = engine.complete([Job(prompt, cfg, strip=True)])[0]
    assert done.text == answers[3] and done.finish_reason == "stop"
    assert "".join(engine.stream(prompt, cfg, threading.Event(), 30)).strip() == answers[3]
    assert main(["predict", str(trained / "best"), "--input", str(sources), "--output",
                 str(tmp_path / "p.jsonl")]) == 2  # like every generation model: generate, not predict


def test_a_decoder_template_is_refused_for_an_encoder_decoder(marian):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    task = _task(f"model.path={marian}", "generation.template=my.jinja")
    assert task.auto_class == "AutoModelForSeq2SeqLM"
    with pytest.raises(LmforgeError, match="generation.template=my.jinja applies to decoder models"):
        task.bind(AutoModelForSeq2SeqLM.from_pretrained(marian), AutoTokenizer.from_pretrained(marian))


def test_lora_on_an_encoder_decoder_merges(data, tok, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    import lmforge

    base = _marian(tok, tmp_path / "base")
    out = tmp_path / "lora"
    assert main(["finetune", "task=generation", "method=lora", "lora.r=4", f"data.train={data / 'train.jsonl'}",
                 f"data.validation={data / 'train.zh'},{data / 'train.en'}", f"model.path={base}", f"output_dir={out}",
                 "train.max_steps=3", "train.batch_size=8", "train.lr=1e-2", "train.precision=fp32",
                 "generation.max_new_tokens=4"]) == 0
    assert (out / "best" / "adapter_config.json").is_file()
    assert main(["merge", str(out / "best"), "--out", str(tmp_path / "merged")]) == 0
    ids = torch.tensor([[5, 6, 7, 1]])
    with torch.no_grad():
        adapter = lmforge.load(out / "best", precision="fp32").model(input_ids=ids, decoder_input_ids=ids).logits
        merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged")(input_ids=ids, decoder_input_ids=ids).logits
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)


# ---- metrics and baseline without a model ------------------------------------------------------------
def test_bleu_and_chrf_equal_sacrebleu():
    import sacrebleu

    from lmforge.evaluate.generation_metrics import bleu, chrf, generation_metrics

    hyps, refs = ["The weather is good today.", "I love you"], ["The weather is nice today.", "I love you."]
    assert bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score)
    assert chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score)
    zh_hyps, zh_refs = ["今天天气很好。", "我爱你"], ["今天天气不错。", "我爱你。"]
    assert bleu(zh_hyps, zh_refs) == pytest.approx(sacrebleu.corpus_bleu(zh_hyps, [zh_refs], tokenize="zh").score)
    assert bleu(zh_hyps, zh_refs) != pytest.approx(sacrebleu.corpus_bleu(zh_hyps, [zh_refs], tokenize="13a").score)
    assert chrf(zh_hyps, zh_refs) == pytest.approx(sacrebleu.corpus_chrf(zh_hyps, [zh_refs], word_order=2).score)
    assert generation_metrics(hyps, refs)["chrf"] == chrf(hyps, refs) and chrf([], []) == 0.0


def test_the_baseline_answers_with_the_nearest_training_prompt(data):
    from lmforge.evaluate.baseline import nearest_answers

    prompts, answers = [zh for zh, _ in PAIRS], [en for _, en in PAIRS]
    assert nearest_answers(prompts, answers, ["今天天气好吗？", "谢谢你。", "xyz"]) == [
        PAIRS[1][1], PAIRS[3][1], PAIRS[0][1]]
    task = _task()
    split = task.read_split(f"{data / 'train.zh'},{data / 'train.en'}")
    metrics, examples = task.baseline(split, split)
    assert metrics["exact_match"] == 1.0 and metrics["method"].startswith("answer of the nearest training prompt")
    assert examples[0].keys() == {"source", "reference", "hypothesis", "score"}


def test_the_report_shows_generated_answers_side_by_side_escaped(tmp_path):
    from lmforge.evaluate.report import write_report

    examples = [{"source": "<b>我爱你</b>", "reference": "I love you.", "hypothesis": "I <3 you", "score": 40.0}]
    write_report(tmp_path / "r.html", title="t", metrics={"bleu": 10.0}, errors=examples,
                 baseline={"method": "nearest <prompt>", "bleu": 5.0})
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;我爱你&lt;/b&gt;" in page and "I &lt;3 you" in page and "<b>" not in page
    assert "Baseline (nearest &lt;prompt&gt;)" in page and "lowest chrF++ first" in page
