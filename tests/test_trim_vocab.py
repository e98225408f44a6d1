"""`lmforge trim-vocab`: a tiny BERT with an XLM-R-like (Unigram) tokenizer, trimmed to some texts, gives
the same tokens and outputs on them; pieces it dropped read as the unknown token."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from lmforge.commands import trim_vocab
from lmforge.errors import LmforgeError
from tests.conftest import write_csv

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
PIECES = ["▁", "▁这个", "酒店", "很好", "很差", "服务", "▁the", "▁room", "▁was", "▁good", "▁bad", "好", "差", "房", "间",
          "▁的", "猫", "狗", "▁cat", "▁dog", "▁g", "ood", "▁b", "ad", "t", "h", "e", "▁r", "oom", "▁w", "as", "c", "a",
          "▁一", "рус"]
DATA = ["这个酒店很好", "这个服务很差", "the room was good", "the room was bad 房间"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny BertModel and a sequence classifier on one Unigram tokenizer (scores: longer is better)."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel, XLMRobertaTokenizer

    root = tmp_path_factory.mktemp("trim")
    vocab = [(p, 0.0) for p in SPECIALS] + [(p, -1.0 - 5.0 / len(p)) for p in PIECES] + [("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    config = BertConfig(vocab_size=len(vocab) + 3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=1, num_labels=3)
    torch.manual_seed(0)
    for name, cls in (("encoder", BertModel), ("classifier", BertForSequenceClassification)):
        cls(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    write_csv(root / "data.csv", [(t, "x") for t in DATA])
    return root


def _outputs(folder: Path, texts: list[str]) -> tuple[list[list[str]], torch.Tensor]:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    cls = AutoModelForSequenceClassification if "classifier" in folder.name else AutoModel
    model = cls.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()]
    return tokens, out.logits if "classifier" in folder.name else out.last_hidden_state


@pytest.mark.parametrize("name", ["encoder", "classifier"])
def test_trimmed_folder_gives_the_same_tokens_and_outputs(source, tmp_path, name):
    out = tmp_path / name
    result = trim_vocab.run(str(source / name), str(source / "data.csv"), str(out), columns="text", chars=False)
    assert result.covered == result.texts == len(DATA)
    assert result.kept < result.rows_before
    tokens, values = _outputs(source / name, DATA)
    tokens2, values2 = _outputs(out, DATA)
    assert tokens2 == tokens
    torch.testing.assert_close(values2, values, rtol=0, atol=1e-6)


def test_dropped_pieces_become_unknown_and_single_chars_are_kept_on_request(source, tmp_path):
    from transformers import AutoTokenizer

    trim_vocab.run(str(source / "encoder"), str(source / "data.csv"), str(tmp_path / "bare"), chars=False)
    trim_vocab.run(str(source / "encoder"), str(source / "data.csv"), str(tmp_path / "chars"))
    bare, chars = (AutoTokenizer.from_pretrained(tmp_path / n) for n in ("bare", "chars"))
    assert bare.convert_ids_to_tokens(bare("猫")["input_ids"]) == ["<s>", "▁", "<unk>", "</s>"]
    assert "猫" in chars.get_vocab() and "рус" not in chars.get_vocab()  # Han kept, Cyrillic not in the data
    assert chars.convert_ids_to_tokens(chars("猫")["input_ids"]) == ["<s>", "▁", "猫", "</s>"]
    assert "<mask>" in bare.get_vocab() and bare.unk_token_id == 3


def test_wordpiece_classifier_round_trip(tiny_classifier, tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert main(["trim-vocab", str(tiny_classifier), "--data", str(tiny / "train.csv"), "--out", str(tmp_path / "t"),
                 "--columns", "text", "--no-chars"]) == 0
    texts = ["这个 酒店 很好 the room", "bad 服务"]
    logits = []
    for folder in (tiny_classifier, tmp_path / "t"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            logits.append(model(**tokenizer(texts, padding=True, return_tensors="pt")).logits)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-6)
    assert main(["predict", str(tmp_path / "t"), "--input", str(tiny / "test.csv"),
                 "--output", str(tmp_path / "p.jsonl")]) == 0  # still an lmforge model folder


def test_refuses_an_existing_out_without_overwrite(source, tmp_path, capsys):
    argv = ["trim-vocab", str(source / "encoder"), "--data", str(source / "data.csv"), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize("columns, data, message", [
    ("label,txt", "data.csv", "data.csv:2: no column 'txt'"),
    (None, "missing.csv", "missing.csv"),
    (" , ", "data.csv", "--columns names nothing"),
])
def test_bad_input_is_one_clear_error(source, tmp_path, columns, data, message):
    with pytest.raises(LmforgeError, match=message):
        trim_vocab.run(str(source / "encoder"), str(source / data), str(tmp_path / "o"), columns=columns)
    assert not (tmp_path / "o").exists()
