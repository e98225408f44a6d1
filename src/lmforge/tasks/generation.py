"""Generative QA, instruction following and translation: supervised fine-tuning on conversations.

The model is a causal LM (decoder) or an encoder-decoder (Marian, T5, NLLB; see `tasks.seq2seq`),
as the checkpoint's config says. Loss is taken on assistant tokens only (a decoder's prompt is
labelled -100; an encoder-decoder's prompt is only ever encoder input), and each assistant turn's
end-of-turn/EOS token is among its labels even when pad == eos, so the model learns to stop.
Translation data (source/target columns, or two aligned text files) becomes single-turn
conversations through `generation.translation_prompt`.
Packing is off: length-grouped batches already leave little padding (see the spine's bench), and
packing without cross-example attention needs variable-length attention kernels that SDPA on CPU
does not provide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from lmforge.config import Config, GenerationConfig
from lmforge.data.conversations import detect_format, to_conversations
from lmforge.data.readers import Row
from lmforge.data.source import read_data
from lmforge.data.translation import TranslationPrompt
from lmforge.data.validate import stratified_split
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.causal import generation_auto_class
from lmforge.models.lm_head import token_losses
from lmforge.registry import register_task
from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Feature, Features, pad_collate
from lmforge.tasks import seq2seq
from lmforge.tasks.contracts import Conversation, Data, Examples, Metrics, Model, Outputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.inference import Loaded

# Columns that make a file a Q&A/conversation file (references then dropped to ask the questions),
# and columns that hold bare questions, for `lmforge generate`.
ANSWER_COLUMNS = {"answer", "output", "response", "completion", "messages", "conversations"}
QUESTION_COLUMNS = ("question", "text", "prompt", "instruction", "query")
# Keys that only shape translation prompts, refused by name for other data.
TRANSLATION_KEYS = ("translation_prompt", "src_lang", "tgt_lang")


@dataclass
class Split:
    source: str
    conversations: list[Conversation]
    locations: list[str] = field(default_factory=list)


@register_task("generation")
def build(cfg: Config) -> "Generation":
    return Generation(cfg)


class Generation:
    name = "generation"
    default_metric = "loss"
    config_groups = ("generation", "lora")

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.auto_class = generation_auto_class(cfg.model)
        self.pad_id = 0
        self.start_id: int | None = None  # the decoder start token of an encoder-decoder; None for a decoder

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> Data[Split]:
        d = self.cfg.data
        if not d.train:
            raise LmforgeError("data.train is empty: give a file of Q&A pairs or conversations")
        train = self.read_split(d.train)
        if d.validation:
            validation = self.read_split(d.validation)
        else:
            keep, held = stratified_split(["all"] * len(train.conversations), d.validation_fraction,
                                          self.cfg.train.seed)
            def pick(idx, name):
                return Split(name, [train.conversations[i] for i in idx], [train.locations[i] for i in idx])
            train, validation = pick(keep, train.source), pick(held,
                                                               f"{train.source} (held-out {d.validation_fraction:.0%})")
            logger.info(f"no data.validation: holding out {len(held)} conversations")
        test = self.read_split(d.test) if d.test else validation
        return Data(train, validation, test)

    def read_split(self, path: str) -> Split:
        """Conversations of a file in any accepted format (detected), every row validated."""
        return self._split(path, read_data(path, self.cfg.data))

    def _split(self, path: str, rows: list[Row]) -> Split:
        g = self.cfg.generation
        fmt = detect_format(rows, g.question_column, g.answer_column)
        _check_translation_keys(g, fmt)
        pairs = to_conversations(rows, fmt, g.question_column, g.answer_column, TranslationPrompt.from_config(g))
        system = [{"role": "system", "content": g.system}] if g.system else []
        conversations = [c if c[0]["role"] == "system" or not system else system + c for _, c in pairs]
        logger.info(f"{path}: {len(pairs)} conversations ({fmt} format)")
        return Split(path, conversations, [loc for loc, _ in pairs])

    def conversations(self, questions: list[str]) -> list[Conversation]:
        system = [{"role": "system", "content": self.cfg.generation.system}] if self.cfg.generation.system else []
        return [system + [{"role": "user", "content": q}] for q in questions]

    def read_prompts(self, path: str) -> list[Conversation]:
        """Conversations to answer: a Q&A/conversation file (its references dropped), or bare questions."""
        rows = read_data(path, self.cfg.data)
        columns = set().union(*(r.values for r in rows[:20])) if rows else set()
        if columns & ANSWER_COLUMNS:
            conversations = self._split(path, rows).conversations
            return [c[:-1] if c[-1]["role"] == "assistant" else c for c in conversations]
        for column in QUESTION_COLUMNS:
            if rows and all(isinstance(r.values.get(column), str) and r.values[column].strip() for r in rows):
                return self.conversations([r.values[column] for r in rows])
        raise LmforgeError(f"{path}: expected a non-empty question column ({', '.join(QUESTION_COLUMNS)})")

    def conversation_split(self, conversations: list[Conversation]) -> Split:
        return Split("<input>", conversations, [f"<input>:{i}" for i in range(len(conversations))])

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, data: Data[Split]) -> tuple[Model, PreTrainedTokenizerBase]:
        from lmforge.models.causal import build_lm

        return build_lm(self.cfg)

    def bind(self, model: Model, tokenizer: PreTrainedTokenizerBase) -> None:
        from lmforge.decoding import SOURCE_TEMPLATE, ensure_template, is_seq2seq

        template = self.cfg.generation.template
        if is_seq2seq(model):
            if template != GenerationConfig().template:
                raise LmforgeError(f"generation.template={template} applies to decoder models: an encoder-decoder "
                                   f"reads the prompt text itself")
            template, self.start_id = SOURCE_TEMPLATE, seq2seq.start_token(model)
        ensure_template(tokenizer, template)  # plain HF folders may lack one
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, split: Split, tokenizer: PreTrainedTokenizerBase) -> Features:
        """input_ids with labels on assistant tokens; rows that lose answer tokens are counted."""
        if self.start_id is not None:
            return self._encode_pairs(split, tokenizer, self.start_id)
        features, lost, cut = [], 0, 0
        for conversation in split.conversations:
            ids, labels = encode_conversation(tokenizer, conversation)
            if len(ids) > self.cfg.model.max_length:
                kept = labels[: self.cfg.model.max_length]
                if all(x == -100 for x in kept):
                    lost += 1
                    continue
                cut += 1
                ids, labels = ids[: self.cfg.model.max_length], kept
            features.append({"input_ids": ids, "labels": labels, "n_targets": sum(x != -100 for x in labels[1:])})
        if lost or cut:
            logger.warning(f"{split.source}: model.max_length={self.cfg.model.max_length} drops {lost} conversations "
                           f"whose whole answer would be cut, and shortens the answer of {cut} more")
        return features

    def _encode_pairs(self, split: Split, tokenizer: PreTrainedTokenizerBase, start_id: int) -> Features:
        """An encoder-decoder's features: prompt and answer are separate sequences, each cut to
        model.max_length (the examples cut are counted in one warning)."""
        limit, features, cut = self.cfg.model.max_length, [], 0
        for conversation, location in zip(split.conversations, split.locations, strict=True):
            feature = seq2seq.encode_pair(tokenizer, conversation, start_id, location)
            if max(len(feature["input_ids"]), len(feature["labels"])) > limit:
                cut += 1
                feature = seq2seq.truncate(feature, limit)
            features.append(feature)
        if cut:
            logger.warning(f"{split.source}: model.max_length={limit} shortens the prompt or answer of {cut} examples")
        return features

    # ---- loop hooks -------------------------------------------------------------------------
    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch:
        padded = {"labels": -100} if self.start_id is None else {"labels": -100, "decoder_input_ids": self.pad_id}
        return pad_collate(features, self.pad_id, padded=padded, multiple=multiple)

    def count(self, feature: Feature) -> float:
        return int(feature["n_targets"])

    def loss(self, model: Model, batch: Batch) -> torch.Tensor:
        return self.losses(model, batch).sum()

    def losses(self, model: Model, batch: Batch) -> torch.Tensor:
        return self._token_losses(model, batch).sum(1)

    def forward(self, model: Model, batch: Batch) -> Outputs:
        losses = self._token_losses(model, batch)
        return {"nll": losses.sum(1).detach().cpu().numpy(),
                "tokens": (self._targets(batch) != -100).sum(1).cpu().numpy()}

    def _token_losses(self, model: Model, batch: Batch) -> torch.Tensor:
        """Next-token cross-entropy at labelled positions, (batch, most labels in a row); 0 in the padding."""
        if self.start_id is not None:
            return seq2seq.seq2seq_token_losses(model, batch)
        return token_losses(model, self._targets(batch), input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"])

    def _targets(self, batch: Batch) -> torch.Tensor:
        """Labels aligned with the model's outputs: a decoder's output at t predicts token t + 1."""
        return batch["labels"] if self.start_id is not None else batch["labels"][:, 1:]

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        loss = float(outputs["nll"].sum() / max(outputs["tokens"].sum(), 1))
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    # ---- results ----------------------------------------------------------------------------
    def report(self, loaded: Loaded, split: Split) -> tuple[Metrics, Examples]:
        """Perplexity on the reference answers, then generated answers scored against them."""
        from lmforge.decoding import generate

        metrics: Metrics = self.score(loaded.outputs(split), [])
        predictions = generate(loaded.model, loaded.tokenizer, [c[:-1] for c in split.conversations],
                               self.cfg.generation, loaded.device, loaded.precision, batch_size=loaded.batch_size)
        scored, examples = _scored(split, predictions)
        return {**metrics, **scored}, examples

    def baseline(self, train: Split, split: Split) -> tuple[Metrics, Examples]:
        """The answer of the most similar training prompt (char 1-3-gram TF-IDF, cosine).

        For translation this is translation memory, the non-neural bar an MT system must clear on
        in-domain text: it gets repeated and near-repeated sentences right, and copying the source
        instead would score ~0 across scripts (zh -> en). For Q&A it is FAQ retrieval."""
        from lmforge.evaluate.baseline import nearest_answers

        predictions = nearest_answers([_asked(c) for c in train.conversations],
                                      [c[-1]["content"] for c in train.conversations],
                                      [_asked(c) for c in split.conversations])
        scored, examples = _scored(split, predictions)
        return {"method": "answer of the nearest training prompt, char 1-3-gram TF-IDF", **scored}, examples


def _asked(conversation: Conversation) -> str:
    """The last user turn: what an answer responds to."""
    return next(m["content"] for m in reversed(conversation) if m["role"] == "user")


def _scored(split: Split, predictions: list[str], limit: int = 50) -> tuple[Metrics, Examples]:
    """Metrics of `predictions` against the split's last answers, and the `limit` worst by sentence
    chrF++, prompt, reference and hypothesis side by side."""
    from lmforge.evaluate.generation_metrics import chrf, generation_metrics

    references = [c[-1]["content"] for c in split.conversations]
    examples: Examples = [{"source": _asked(c), "reference": ref, "hypothesis": pred, "score": chrf([pred], [ref])}
                          for c, ref, pred in zip(split.conversations, references, predictions)]
    return generation_metrics(predictions, references), sorted(examples, key=lambda e: e["score"])[:limit]


def _check_translation_keys(cfg: GenerationConfig, fmt: str) -> None:
    """Refuse translation settings on data that is not translation data: they would do nothing."""
    default = GenerationConfig()
    changed = [key for key in TRANSLATION_KEYS if getattr(cfg, key) != getattr(default, key)]
    if changed and fmt != "translation":
        raise LmforgeError(f"generation.{changed[0]} applies to translation data (source/target columns or "
                           f"SOURCE,TARGET text files), not to this {fmt} data")


def encode_conversation(tokenizer: PreTrainedTokenizerBase, conversation: Conversation) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation, and labels that are -100 outside assistant turns.

    Assistant spans are found as character ranges (prompt-so-far vs. prompt-plus-answer), then mapped
    to tokens through offsets, so tokenising the text in one piece never shifts a label.
    """
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    spans = []
    for i, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(conversation[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
        if not text.startswith(upto) or not upto.startswith(before):
            raise LmforgeError("the chat template renders a conversation differently from its prefix; "
                               "cannot tell answer tokens apart (use generation.template=plain)")
        spans.append((len(before), len(upto)))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = np.array([start for start, _ in enc["offset_mapping"]])
    inside: np.ndarray = np.zeros(len(starts), dtype=bool)
    for lo, hi in spans:
        inside |= (starts >= lo) & (starts < hi)
    ids = enc["input_ids"]
    return ids, [t if keep else -100 for t, keep in zip(ids, inside)]
