"""model.pooling=mean: an encoder classifier's head reads the masked mean of the token states, inside
the standard transformers class, and every lmforge load gives the saved model the same pooling."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.models.classifier import build_classifier
from lmforge.models.pooling import CONFIG_KEY, set_pooling
from tests.conftest import without_dropout


def _batch(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


def _built(tiny_cfg, pooling: str, *overrides: str):
    cfg = tiny_cfg(f"model.pooling={pooling}", *overrides)
    model, tokenizer = build_classifier(cfg, ["neg", "pos"], ["很好"])
    without_dropout(model)
    return model.eval(), tokenizer


def test_mean_pooling_is_the_masked_mean_under_the_same_head(tiny_cfg):
    model, tok = _built(tiny_cfg, "mean")
    assert model.config.to_dict()[CONFIG_KEY] == "mean"
    batch = _batch(tok, ["很好 很好 很好 很好", "差"])  # the second row is mostly padding
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.base_model(**batch).last_hidden_state  # the bare encoder: not rewritten
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        expected = model.classifier(model.base_model.pooler.activation(model.base_model.pooler.dense(mean)))
        alone = model(**_batch(tok, ["差"])).logits
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(logits[1], alone[0])  # padding is not averaged in


def test_a_failed_call_leaves_no_mask_behind(tiny_cfg):
    """A classifier call that raises (an id beyond the vocabulary) must not leave its mask for the
    next bare-encoder call on the thread (the embeddings endpoint would be mean-pooled by mistake)."""
    model, tok = _built(tiny_cfg, "mean")
    batch = _batch(tok, ["很好 很好", "差"])
    with torch.no_grad():
        before = model.base_model(**batch).last_hidden_state
        with pytest.raises(IndexError):
            model(input_ids=torch.full_like(batch["input_ids"], 10**6), attention_mask=batch["attention_mask"])
        torch.testing.assert_close(model.base_model(**batch).last_hidden_state, before)


def test_first_pooling_is_plain_transformers(tiny_cfg):
    model, tok = _built(tiny_cfg, "first")
    batch = _batch(tok, ["很好 很好", "差"])
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
        expected = model.classifier(model.base_model.pooler(hidden))
        torch.testing.assert_close(model(**batch).logits, expected)
    assert model.config.to_dict()[CONFIG_KEY] == "first"


def test_a_saved_mean_classifier_loads_back_with_its_pooling(tiny_cfg, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from lmforge.models.folder import load_placed

    body, tok = _built(tiny_cfg, "auto")  # auto on random weights: the first token
    assert body.config.to_dict()[CONFIG_KEY] == "first"
    body.base_model.save_pretrained(tmp_path / "body")  # a pretrained encoder without a pooler
    tok.save_pretrained(tmp_path / "body")
    pretrained = ("model.preset=", "model.tokenizer=", f"model.path={tmp_path / 'body'}")
    tuned, _ = _built(tiny_cfg, "auto", *pretrained)  # the whole body fine-tuned: the first token
    assert tuned.config.to_dict()[CONFIG_KEY] == "first"
    layers = body.config.num_hidden_layers
    model, tok = _built(tiny_cfg, "auto", *pretrained, f"train.freeze_layers={layers}")
    assert model.config.to_dict()[CONFIG_KEY] == "mean"  # a head on the frozen body: the mean
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    batch = _batch(tok, ["很好 很好 很好", "差 差"])
    with torch.no_grad():
        expected = model(**batch).logits
        placed = load_placed(tmp_path, "AutoModelForSequenceClassification", precision="fp32").model
        torch.testing.assert_close(placed(**batch).logits, expected)
        # transformers alone ignores the key and reads the first token: different outputs
        plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        assert not torch.allclose(plain(**batch).logits, expected)


def test_lora_wrapped_classifier_still_pools(tiny_cfg):
    """peft's wrapper calls the classifier through its hooks: with LoRA's B = 0 at the start, the
    wrapped model gives the unwrapped model's mean-pooled logits."""
    from peft import LoraConfig, TaskType, get_peft_model

    model, tok = _built(tiny_cfg, "mean")
    batch = _batch(tok, ["很好 很好 很好 很好", "差"])
    with torch.no_grad():
        expected = model(**batch).logits
        wrapped = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query", "value"]))
        torch.testing.assert_close(wrapped(**batch).logits, expected)


def test_threads_keep_their_own_masks(tiny_cfg):
    model, tok = _built(tiny_cfg, "mean")
    texts = [["很好 很好 很好 很好 很好", "差"], ["差 差 差", "很好"]]
    with torch.no_grad():
        expected = [model(**_batch(tok, t)).logits for t in texts]
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def run(i: int) -> None:
        with torch.no_grad():
            results[i] = [model(**_batch(tok, texts[i])).logits for _ in range(30)]

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        for logits in results[i]:
            torch.testing.assert_close(logits, expected[i])


def test_decoder_classifiers_keep_their_last_token():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=2, pad_token_id=0)
    model = LlamaForSequenceClassification(config)
    assert set_pooling(model, "auto", head_only=True) == "first"
    with pytest.raises(LmforgeError, match="encoder-only"):
        set_pooling(LlamaForSequenceClassification(config), "mean", head_only=True)


@pytest.fixture(scope="module")
def mean_classifier(tiny, tmp_path_factory) -> Path:
    """The shared tiny classifier's recipe with model.pooling=mean."""
    from lmforge import config
    from lmforge.commands import finetune

    out = tmp_path_factory.mktemp("mean_classifier")
    finetune.run(config.load(None, [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}",
                                    "model.preset=tiny", f"model.tokenizer={tiny / 'tok'}", f"output_dir={out}",
                                    "model.pooling=mean", "train.epochs=5", "train.batch_size=16", "train.lr=2e-3",
                                    "train.seed=0", "train.precision=fp32"]))
    return out / "best"


def test_onnx_export_and_int8_keep_mean_pooling(mean_classifier, tiny, tmp_path):
    import json

    import onnxruntime
    from transformers import AutoModelForSequenceClassification

    from lmforge import load
    from lmforge.cli import main
    from lmforge.compress.onnx_export import ONNX_FILE, PARITY_FILE

    out = tmp_path / "onnx"
    assert main(["export-onnx", str(mean_classifier), "--out", str(out), "--texts", str(tiny / "test.csv")]) == 0
    assert json.loads((out / PARITY_FILE).read_text())["max_abs_diff"] < 1e-3
    loaded = load(mean_classifier, precision="fp32")
    texts = ["很好 the room", "糟糕 退货 价格 服务 这个 酒店 bad awful good great"]
    enc = loaded.tokenizer(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {i.name: enc[i.name] for i in session.get_inputs()})[0]
    with torch.no_grad():
        expected = loaded.model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
        # what the graph computes is the mean: the same weights read at the first token (plain
        # transformers ignores lmforge_pooling) give other logits
        first = AutoModelForSequenceClassification.from_pretrained(mean_classifier).eval()
        other = first(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    assert not torch.allclose(other, expected, atol=1e-3)
    assert main(["quantize", str(mean_classifier), "--method", "int8-dynamic", "--out", str(tmp_path / "int8")]) == 0
    with torch.no_grad():
        int8 = load(tmp_path / "int8").model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
    # int8 rounding moves the logits a little; reading the first token would move them much more
    assert (int8 - expected).abs().max() < (other - expected).abs().max() / 4


def test_fine_tuning_a_saved_classifier_again_keeps_or_switches_its_pooling(tiny_cfg, tmp_path):
    """A classifier folder that records mean pooling, fine-tuned again: auto keeps what its head was
    trained to read; an explicit `first` removes the mean (config and computation agree either way)."""
    model, tok = _built(tiny_cfg, "mean")
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    again = ("model.preset=", "model.tokenizer=", f"model.path={tmp_path / 'clf'}")
    batch = _batch(tok, ["很好 很好 很好", "差"])
    kept, _ = _built(tiny_cfg, "auto", *again)
    assert kept.config.to_dict()[CONFIG_KEY] == "mean"
    switched, _ = _built(tiny_cfg, "first", *again)
    assert switched.config.to_dict()[CONFIG_KEY] == "first"
    with torch.no_grad():
        torch.testing.assert_close(kept(**batch).logits, model(**batch).logits)
        hidden = switched.base_model(**batch).last_hidden_state
        expected = switched.classifier(switched.base_model.pooler(hidden))
        torch.testing.assert_close(switched(**batch).logits, expected)


def test_a_body_saved_from_a_mean_classifier_stays_a_plain_encoder(tiny_cfg, tmp_path):
    """The body of a mean-pooled classifier, saved on its own, carries the config key along; loaded as
    a bare encoder (embeddings) its token states are not rewritten."""
    from transformers import AutoModel

    from lmforge.config import ModelConfig
    from lmforge.models.load import load_model

    model, tok = _built(tiny_cfg, "mean")
    model.base_model.save_pretrained(tmp_path / "body")
    body = load_model(ModelConfig(path=str(tmp_path / "body")), AutoModel).eval()
    assert body.config.to_dict()[CONFIG_KEY] == "mean"
    batch = _batch(tok, ["很好 很好 很好", "差"])
    with torch.no_grad():
        torch.testing.assert_close(body(**batch).last_hidden_state, model.base_model(**batch).last_hidden_state)
