"""Train a tokenizer on a corpus with HF `tokenizers`, saved as a standard fast-tokenizer folder.

WordPiece for encoders, normalised like BERT-Chinese: every CJK character is its own pre-token, so
Chinese never becomes [UNK]-heavy multi-character pieces and whole-word masking can regroup the
characters later. Byte-level BPE for decoders: any byte sequence is representable, so there is no
unknown token at all, and frequent Chinese characters and words get merged into single tokens.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.atomic import write_dir
from lmforge.data.corpus import Subset
from lmforge.errors import LmforgeError

WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BPE_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
HELD_OUT = 0.02  # share of documents kept out of training to measure the tokenizer honestly


@dataclass
class TokenizerReport:
    kind: str
    vocab_size: int
    documents_trained: int
    documents_held_out: int
    unknown_rate: float  # share of held-out tokens that are the unknown token
    tokens_per_character: float  # held-out tokens / characters: lower means more compression


def train_tokenizer(texts: Sequence[str], out: Path, kind: str = "wordpiece", vocab_size: int = 16000,
                    lowercase: bool = False, seed: int = 0) -> TokenizerReport:
    """Train on all but a held-out slice of `texts`, save to `out`, and measure on the slice. The
    training documents are streamed to the trainer, so a built corpus larger than memory works."""
    if kind not in ("wordpiece", "bpe"):
        raise LmforgeError(f"--kind must be wordpiece (encoders) or bpe (decoders), not '{kind}'")
    if vocab_size < 100:
        raise LmforgeError(f"--vocab-size {vocab_size} is too small (at least 100)")
    if len(texts) < 2:
        raise LmforgeError("a tokenizer needs a corpus of at least 2 documents")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_held = max(1, int(len(texts) * HELD_OUT))
    held = [texts[i] for i in order[:n_held]]
    train = Subset(texts, sorted(order[n_held:]))  # read in file order: sequential on disk
    fast = _wordpiece(train, vocab_size, lowercase) if kind == "wordpiece" else _bpe(train, vocab_size)
    report = _measure(fast, held, kind, len(train))

    def fill(tmp: Path) -> None:
        fast.save_pretrained(tmp)
        (tmp / "tokenizer_report.json").write_text(json.dumps(report.__dict__, indent=1), encoding="utf-8")

    write_dir(out, fill)
    return report


def _wordpiece(texts: Sequence[str], vocab_size: int, lowercase: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=WORDPIECE_SPECIALS,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer, length=len(texts))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=lowercase, tokenize_chinese_chars=True,
                             unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                             mask_token="[MASK]")


def _bpe(texts: Sequence[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BPE_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer, length=len(texts))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def _measure(fast: Any, held: list[str], kind: str, n_train: int) -> TokenizerReport:
    ids = fast(held, add_special_tokens=False)["input_ids"]
    tokens = sum(len(row) for row in ids)
    unk = fast.unk_token_id
    unknown = sum(row.count(unk) for row in ids) if unk is not None else 0
    chars = sum(len(t) for t in held)
    return TokenizerReport(kind, len(fast), n_train, len(held), round(unknown / max(tokens, 1), 5),
                           round(tokens / max(chars, 1), 4))
