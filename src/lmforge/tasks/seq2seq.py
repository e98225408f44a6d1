"""Encoding and loss of an encoder-decoder on the generation task (translation with Marian, T5, NLLB).

The encoder reads the prompt; the decoder is fed the answer shifted right behind the model's start
token and is scored on every answer token plus the closing </s>. The source is never a label, so it
cannot contribute to the loss, and padding on either side changes nothing (padded encoder positions
are masked, padded answer positions are -100).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lmforge.decoding import prompt_text
from lmforge.errors import LmforgeError
from lmforge.models.lm_head import token_losses
from lmforge.runtime.collate import Batch, Feature
from lmforge.tasks.contracts import Conversation, Model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def encode_pair(tokenizer: PreTrainedTokenizerBase, conversation: Conversation, start_id: int,
                location: str) -> Feature:
    """input_ids of the prompt (with the tokenizer's special tokens, as at generation), labels of
    the answer ending in </s>, and the decoder inputs (labels shifted right behind `start_id`)."""
    if sum(m["role"] == "user" for m in conversation) != 1:
        raise LmforgeError(f"{location}: an encoder-decoder model reads one prompt and writes one answer; "
                           f"this conversation has several turns")
    ids = tokenizer(prompt_text(tokenizer, conversation[:-1]))["input_ids"]
    labels = tokenizer(text_target=conversation[-1]["content"])["input_ids"]
    if not labels or labels[-1] != tokenizer.eos_token_id:  # the model must learn to stop
        labels.append(tokenizer.eos_token_id)
    return {"input_ids": ids, "labels": labels, "decoder_input_ids": [start_id, *labels[:-1]],
            "n_targets": len(labels)}


def truncate(feature: Feature, max_length: int) -> Feature:
    """The feature with prompt and answer each cut to `max_length` tokens."""
    return {**feature, "input_ids": feature["input_ids"][:max_length], "labels": feature["labels"][:max_length],
            "decoder_input_ids": feature["decoder_input_ids"][:max_length],
            "n_targets": min(feature["n_targets"], max_length)}


def seq2seq_token_losses(model: Model, batch: Batch) -> torch.Tensor:
    """Cross-entropy at each answer token, (batch, longest answer); 0 in the padding."""
    return token_losses(model, batch["labels"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        decoder_input_ids=batch["decoder_input_ids"])


def start_token(model: Model) -> int:
    """The token the decoder starts from (Marian: pad; T5: pad; NLLB/BART: </s>)."""
    start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        start = model.config.pad_token_id
    if start is None:
        raise LmforgeError("the encoder-decoder's config names no decoder_start_token_id or pad_token_id")
    return int(start)
