"""Generation task: answer-only loss with EOS, templates, LoRA merge, decoding, CLI end to end."""

import json
from pathlib import Path

import pytest
import torch

from lmforge import config
from lmforge.cli import main
from lmforge.decoding import ensure_template
from lmforge.errors import LmforgeError
from lmforge.tasks.generation import encode_conversation

PAIRS = [("什么是深度学习？", "深度学习是机器学习的一个分支。"), ("What is Python?", "A programming language."),
         ("你好", "你好！有什么可以帮你？"), ("Who are you?", "I am a small test model.")]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer trained on the pairs, with pad == eos as in many real decoders."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [q + " " + a for q, a in PAIRS] * 5 + ["### Question:\n### Answer:\n"]
    tok.train_from_iterator(text, trainer)
    folder = tmp_path_factory.mktemp("bpe")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>")
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    rows = [{"question": q, "answer": a} for q, a in PAIRS] * 12
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def _cfg(bpe, qa_file, out, *extra):
    return ["finetune", "task=generation", f"data.train={qa_file}", f"data.validation={qa_file}",
            "model.preset=tiny", f"model.tokenizer={bpe}", f"output_dir={out}", "train.batch_size=8",
            "train.lr=5e-3", "train.epochs=40", "train.seed=0", "train.precision=fp32", "train.warmup_ratio=0",
            "generation.max_new_tokens=24", *extra]


def test_only_answer_tokens_carry_loss_and_eos_is_trained(bpe):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bpe)
    ensure_template(tok, "plain")
    conversation = [{"role": "user", "content": PAIRS[0][0]}, {"role": "assistant", "content": PAIRS[0][1]},
                    {"role": "user", "content": PAIRS[1][0]}, {"role": "assistant", "content": PAIRS[1][1]}]
    ids, labels = encode_conversation(tok, conversation)
    assert tok.pad_token_id == tok.eos_token_id
    labelled = [t for t in labels if t != -100]
    assert tok.decode(labelled).replace("\n", "") == PAIRS[0][1] + "</s>" + PAIRS[1][1] + "</s>"
    assert labelled.count(tok.eos_token_id) == 2  # each answer's EOS is a target, though pad == eos
    assert PAIRS[0][0] not in tok.decode(labelled) and PAIRS[1][0] in tok.decode(ids)


@pytest.fixture(scope="module")
def trained(bpe, qa_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "run"
    assert main(_cfg(bpe, qa_file, out)) == 0
    return out


def test_finetune_generate_evaluate_end_to_end(trained, qa_file, tmp_path):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["exact_match"] == 1.0, metrics  # memorised: greedy answers stop exactly at EOS
    assert metrics["perplexity"] < 1.5
    out = tmp_path / "answers.jsonl"
    assert main(["generate", str(trained / "best"), "--input", str(qa_file), "--output", str(out)]) == 0
    answers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert answers[0] == {"question": PAIRS[0][0], "answer": PAIRS[0][1]}
    assert main(["evaluate", str(trained / "best"), "--data", str(qa_file), "--out", str(tmp_path / "eval")]) == 0
    for key in ["exact_match", "token_f1", "rouge_l", "bleu", "perplexity"]:
        assert key in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_template_is_saved_and_used_at_inference(trained):
    import lmforge
    from lmforge.decoding import TEMPLATES

    loaded = lmforge.load(trained / "best", precision="fp32")
    assert loaded.tokenizer.chat_template == (TEMPLATES / "plain.jinja").read_text(encoding="utf-8")
    assert loaded.generate([PAIRS[1][0]]) == [PAIRS[1][1]]


def test_stop_strings_and_batched_equals_single(trained):
    import lmforge
    from lmforge.decoding import generate

    loaded = lmforge.load(trained / "best", precision="fp32")
    prompts = [[{"role": "user", "content": q}] for q, _ in PAIRS]
    batched = generate(loaded.model, loaded.tokenizer, prompts, loaded.cfg.generation, loaded.device, "fp32",
                       batch_size=4)
    single = [generate(loaded.model, loaded.tokenizer, [p], loaded.cfg.generation, loaded.device,
                       "fp32")[0] for p in prompts]
    assert batched == single == [a for _, a in PAIRS]
    cfg = config.load(None, ["generation.stop=programming"]).generation
    cut = generate(loaded.model, loaded.tokenizer, [prompts[1]], cfg, loaded.device, "fp32")
    assert cut == ["A"]


def test_lora_merge_matches_adapter(bpe, qa_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import lmforge
    from lmforge.models.presets import decoder_config

    tok = AutoTokenizer.from_pretrained(bpe)
    base = tmp_path / "base"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(decoder_config("tiny", len(tok), tok, 128)).save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "lora"
    assert main(_cfg(bpe, qa_file, out, "method=lora", "train.epochs=2", "lora.r=4", f"model.path={base}",
                     "model.preset=")) == 0
    assert (out / "best" / "adapter_config.json").is_file() and not (out / "best" / "model.safetensors").exists()
    assert main(["merge", str(out / "best"), "--out", str(tmp_path / "merged")]) == 0
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    ids = tok("What is Python?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        adapter = lmforge.load(out / "best", precision="fp32").model(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
        original = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(original, merged, atol=1e-3)  # training really changed the model


def test_questions_file_and_predict_refusal(trained, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": PAIRS[3][0]}) + "\n", encoding="utf-8")
    out = tmp_path / "a.jsonl"
    assert main(["generate", str(trained / "best"), "--input", str(questions), "--output", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["answer"] == PAIRS[3][1]
    assert main(["predict", str(trained / "best"), "--input", str(questions), "--output",
                 str(tmp_path / "p.jsonl")]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"question": "  "}) + "\n", encoding="utf-8")
    assert main(["generate", str(trained / "best"), "--input", str(empty), "--output", str(out)]) == 2


def test_loss_on_labelled_positions_equals_full_logits_loss():
    """The LM head runs only at labelled positions; loss and gradients match full-vocabulary logits."""
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmforge.tasks.generation import Generation

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32))
    ids = torch.randint(0, 64, (3, 12))
    mask, labels = torch.ones_like(ids), ids.clone()
    labels[0, :5] = -100  # prompt of 5 tokens
    labels[1, :3], labels[1, 6:8] = -100, -100  # two answers (multi-turn)
    mask[2, 9:], labels[2, :7], labels[2, 9:] = 0, -100, -100  # right padding
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    task = Generation(config.load(None, ["task=generation"]))

    def full_loss(m):
        logits = m(input_ids=ids, attention_mask=mask).logits[:, :-1]
        return F.cross_entropy(logits.float().transpose(1, 2), labels[:, 1:], ignore_index=-100,
                               reduction="none").sum(1)

    expected = full_loss(model)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got = task._token_losses(model, batch)
    assert got.shape == (3, 7)  # the longest answer set (row 0: 7 labels after the shift), not all 11 positions
    torch.testing.assert_close(got.sum(1), expected, atol=1e-5, rtol=1e-5)
    task.loss(model, batch).backward()
    for p, want in zip(model.parameters(), expected_grads):
        torch.testing.assert_close(p.grad, want, atol=1e-5, rtol=1e-5)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        torch.testing.assert_close(task._token_losses(lora, batch).sum(1), full_loss(lora), atol=1e-5, rtol=1e-5)
    assert task._token_losses(model, {**batch, "labels": torch.full_like(labels, -100)}).sum() == 0


def test_another_template_than_the_saved_one_warns(trained, tmp_path, caplog, capfd):
    import lmforge

    other = tmp_path / "turns.jinja"
    other.write_text("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                     "{% if add_generation_prompt %}<assistant>{% endif %}", encoding="utf-8")
    with caplog.at_level("WARNING", logger="lmforge"):
        same = lmforge.load(trained / "best", precision="fp32", template="plain")
    assert "template" not in caplog.text and same.generate([PAIRS[1][0]]) == [PAIRS[1][1]]
    with caplog.at_level("WARNING", logger="lmforge"):
        loaded = lmforge.load(trained / "best", precision="fp32", template=str(other))
    assert "the built-in 'plain' template" in caplog.text and f"'{other}'" in caplog.text
    assert loaded.tokenizer.chat_template == other.read_text(encoding="utf-8")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": PAIRS[1][0]}) + "\n", encoding="utf-8")
    capfd.readouterr()
    assert main(["generate", str(trained / "best"), "--input", str(questions), "--output", str(tmp_path / "a.jsonl"),
                 "--template", str(other)]) == 0
    assert f"WARNING: {trained / 'best'} was saved with the built-in 'plain' template" in capfd.readouterr().err
    assert main(["generate", str(trained / "best"), "--input", str(questions), "--output", str(tmp_path / "a.jsonl"),
                 "--template", "nosuch"]) == 2


def test_lora_on_a_preset_base_saves_a_loadable_merged_model(bpe, qa_file, tmp_path):
    """A preset's random base weights exist nowhere but in the run: best/ must hold them."""
    import lmforge

    out = tmp_path / "lora"
    assert main(_cfg(bpe, qa_file, out, "method=lora", "train.epochs=1", "lora.r=4")) == 0
    assert not (out / "best" / "adapter_config.json").exists() and (out / "best" / "model.safetensors").is_file()
    loaded = lmforge.load(out / "best", precision="fp32")
    assert not hasattr(loaded.model, "peft_config") and loaded.generate(["What is Python?"])[0] is not None


def test_gradient_checkpointing_gives_the_same_gradients(bpe, qa_file, tmp_path):
    """train.gradient_checkpointing trades compute for memory only: same loss and gradients, and
    the loop turns it on (for LoRA models too); DP-SGD, whose hooks would see every layer twice, refuses it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.errors import LmforgeError
    from lmforge.models.presets import decoder_config
    from lmforge.privacy.dp import build_dp
    from lmforge.tasks.generation import Generation
    from lmforge.train.loop import checkpoint_activations

    tok = AutoTokenizer.from_pretrained(bpe)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(decoder_config("tiny", len(tok), tok, 128)).train()
    ids = torch.randint(3, len(tok), (2, 16))

    def grads():
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain = grads()
    checkpoint_activations(model)
    assert model.is_activation_checkpointing
    ckpt_loss, ckpt = grads()
    torch.testing.assert_close(ckpt_loss, plain_loss)
    for a, b in zip(ckpt, plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    assert main(_cfg(bpe, qa_file, tmp_path / "lora", "method=lora", "train.max_steps=2", "lora.r=4",
                     "train.gradient_checkpointing=true")) == 0
    with pytest.raises(LmforgeError, match="gradient_checkpointing"):
        cfg = config.load(None, ["train.gradient_checkpointing=true", "privacy.dp.target_epsilon=8"])
        build_dp(cfg, Generation(cfg), 100, 10, 1)


def test_a_prompt_longer_than_the_context_keeps_its_end(trained, caplog):
    """A prompt beyond the model's context (minus the answer budget) is cut from the left, with a warning
    naming it; the question at its end survives."""
    import logging

    import lmforge
    from lmforge.decoding import complete, prompt_limit, prompt_text

    loaded = lmforge.load(trained / "best", precision="fp32")
    cfg = loaded.cfg.generation
    limit = prompt_limit(loaded.model, loaded.tokenizer, cfg)
    assert limit == loaded.model.config.max_position_embeddings - cfg.max_new_tokens
    long = prompt_text(loaded.tokenizer, [{"role": "user", "content": "很长的背景。" * 1500 + PAIRS[3][0]}])
    short = prompt_text(loaded.tokenizer, [{"role": "user", "content": PAIRS[3][0]}])
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        done = complete(loaded.model, loaded.tokenizer, [short, long], cfg, loaded.device, "fp32")
    assert done[1].prompt_tokens == limit and done[0].prompt_tokens < 50
    assert done[0].text == PAIRS[3][1]
    assert f"prompt 1: {len(loaded.tokenizer(long, add_special_tokens=False)['input_ids'])} tokens" in caplog.text
    assert f"keeping its last {limit} tokens" in caplog.text and "prompt 0" not in caplog.text
    too_long = config.load(None, [f"generation.max_new_tokens={loaded.model.config.max_position_embeddings}"])
    with pytest.raises(LmforgeError, match="leaves no room for a prompt"):
        complete(loaded.model, loaded.tokenizer, [short], too_long.generation, loaded.device, "fp32")
