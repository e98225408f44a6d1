"""Token classification (entity recognition and any per-word labelling) with a BIO or BIOES head.

Words come from `data.tagged` (Chinese: one character per word); each word's tag is learnt on its
first sub-token and the others are labelled -100, so a tokenizer's word pieces never change what
counts as an entity. Scores are entity-level (exact span and type, seqeval's definition) on the
words of the split, so words cut off by `model.max_length` count as predicted "O" rather than
vanishing from the score. Predictions are character spans of the input text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.config import Config
from lmforge.data.readers import Row
from lmforge.data.source import read_data
from lmforge.data.tagged import ENTITIES, Sentence, parse_rows, text_sentences
from lmforge.data.tagging import SCHEMES, Span, label_set, spans_to_tags, tags_to_spans
from lmforge.data.validate import stratified_split
from lmforge.errors import DataError, LmforgeError, Problem
from lmforge.log import logger
from lmforge.registry import register_task
from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Feature, Features, pad_collate
from lmforge.tasks.contracts import Data, Examples, Metrics, Model, Outputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.inference import Loaded

CRF_NAME = "CRF, character features"


@dataclass
class Split:
    """Validated sentences of one file (or of texts given directly)."""

    source: str
    sentences: list[Sentence]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.sentences]


@register_task("ner")
def build(cfg: Config) -> "Ner":
    return Ner(cfg)


class Ner:
    """The token-tagging task; its tag set is fixed by the training data or a saved model."""

    name = "ner"
    auto_class = "AutoModelForTokenClassification"
    config_groups = ("ner",)
    default_metric = "f1_micro"

    def __init__(self, cfg: Config):
        if cfg.ner.scheme not in SCHEMES:
            raise LmforgeError(f"ner.scheme={cfg.ner.scheme}: expected one of {', '.join(SCHEMES)}")
        self.cfg, self.scheme = cfg, cfg.ner.scheme
        self.label_names: list[str] = []
        self.pad_id = 0

    @property
    def entity_types(self) -> list[str]:
        """Entity types of the tag set (PER, LOC, ...), sorted."""
        return sorted({name.split("-", 1)[1] for name in self.label_names if "-" in name})

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> Data[Split]:
        """Read and check every split; the tag set comes from the training data's entity types."""
        d = self.cfg.data
        if not d.train:
            raise LmforgeError("data.train is empty: give a CoNLL file or JSONL with tokens+tags or text+entities")
        problems: list[Problem] = []
        train = self._read(d.train, problems, labelled=True)
        types = sorted({s.label for sentence in train.sentences for s in sentence.spans or []})
        if not types and not problems:
            problems.append(Problem(d.train, "", "no entity in the training data"))
        self.label_names = label_set(types, self.scheme)
        validation = self._read(d.validation, problems, labelled=True) if d.validation else None
        if validation is None:
            train, validation = self._hold_out(train)
        test = self._read(d.test, problems, labelled=True) if d.test else validation
        for split in (validation, test):
            problems += self._unseen_types(split)
        if problems:
            raise DataError(problems)
        return Data(train, validation, test)

    def read_split(self, path: str) -> Split:
        """A labelled evaluation file, checked against this model's entity types."""
        problems: list[Problem] = []
        split = self._read(path, problems, labelled=True)
        problems += self._unseen_types(split)
        if problems:
            raise DataError(problems)
        return split

    def read_texts(self, path: str) -> Split:
        """A file to tag: rows with a text (data.text_column) or tokens; labels, if any, are ignored."""
        problems: list[Problem] = []
        split = self._read(path, problems, labelled=False)
        if problems:
            raise DataError(problems)
        return split

    def text_split(self, texts: list[str]) -> Split:
        return Split("<input>", text_sentences(texts))

    def parts(self, split: Split, size: int) -> Iterator[Split]:
        for start in range(0, len(split.sentences), size):
            yield Split(split.source, split.sentences[start:start + size])

    def _read(self, path: str, problems: list[Problem], labelled: bool) -> Split:
        rows = read_data(path, self.cfg.data)
        if self.cfg.data.redact_pii and labelled:
            problems += _redaction_moves_offsets(rows)
        parsed = parse_rows(rows, self.cfg.data.text_column, labelled)
        problems += parsed.problems
        if not rows:
            problems.append(Problem(path, "", "no sentences"))
        if parsed.repaired:
            logger.warning(f"{path}: {len(parsed.repaired)} I-/E- tags without a B- before them were read as "
                           f"starting an entity, as conlleval reads them (first at {parsed.repaired[0]})")
        return Split(path, parsed.sentences)

    def _unseen_types(self, split: Split) -> list[Problem]:
        known = set(self.entity_types)
        return [Problem(sentence.location, "", f"entity type '{span.label}' never appears in the training data "
                                               f"(training types: {', '.join(sorted(known))})")
                for sentence in split.sentences for span in sentence.spans or [] if span.label not in known]

    def _hold_out(self, train: Split) -> tuple[Split, Split]:
        fraction = self.cfg.data.validation_fraction
        keep, held = stratified_split(["all"] * len(train.sentences), fraction, self.cfg.train.seed)
        logger.info(f"no data.validation: holding out {len(held)} of {len(train.sentences)} training sentences")
        return (Split(train.source, [train.sentences[i] for i in keep]),
                Split(f"{train.source} (held-out {fraction:.0%})", [train.sentences[i] for i in held]))

    def tags(self, sentence: Sentence) -> list[str]:
        """The sentence's gold tags in this task's scheme."""
        return spans_to_tags(sentence.spans or [], len(sentence.words), self.scheme)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, data: Data[Split]) -> tuple[Model, PreTrainedTokenizerBase]:
        from lmforge.models.classifier import build_token_classifier

        return build_token_classifier(self.cfg, self.label_names, [s.text for s in data.train.sentences])

    def bind(self, model: Model, tokenizer: PreTrainedTokenizerBase) -> None:
        from lmforge.models.classifier import label_names

        if not tokenizer.is_fast:
            raise LmforgeError("task=ner needs a fast (Rust) tokenizer: sub-tokens are mapped to words through it")
        self.label_names = label_names(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, split: Split, tokenizer: PreTrainedTokenizerBase) -> Features:
        """Token ids; per token its word (first sub-token) or -1; labels on first sub-tokens only."""
        enc = tokenizer(_words(split), is_split_into_words=True)
        marker = word_marker(tokenizer)
        index = {name: i for i, name in enumerate(self.label_names)}
        features, cut = [], 0
        for i, sentence in enumerate(split.sentences):
            ids, word_ids = fit_tokens(enc["input_ids"][i], enc.word_ids(i), marker, self.cfg.model.max_length)
            heads = first_subtokens(word_ids)
            cut += max(heads, default=-1) + 1 < len(sentence.words)
            feature: Feature = {"input_ids": ids, "words": heads,
                                "starts": [a for a, _ in sentence.words], "ends": [b for _, b in sentence.words]}
            if sentence.spans is not None:
                gold = [index[tag] for tag in self.tags(sentence)]
                feature["labels"] = [gold[w] if w >= 0 else -100 for w in heads]
                feature["gold"] = gold
            features.append(feature)
        if cut:
            logger.warning(f"{split.source}: {cut} sentences are longer than model.max_length="
                           f"{self.cfg.model.max_length} tokens; their last words are tagged O")
        return features

    # ---- loop hooks -------------------------------------------------------------------------
    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch:
        token_keys = ("input_ids", "words", "labels")
        padded = {"words": -1, "labels": -100} if "labels" in features[0] else {"words": -1}
        batch = pad_collate([{k: f[k] for k in token_keys if k in f} for f in features], self.pad_id, padded,
                            multiple)
        for key in ("starts", "ends"):  # per word, not per token: padded to the most words
            batch[key] = _pad([f[key] for f in features], -1)
        return batch

    def count(self, feature: Feature) -> float:
        return sum(label != -100 for label in feature["labels"])

    def loss(self, model: Model, batch: Batch) -> torch.Tensor:
        return self.losses(model, batch).sum()

    def losses(self, model: Model, batch: Batch) -> torch.Tensor:
        """Each sentence's summed cross-entropy over its labelled sub-tokens, shape (n,)."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        return F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=-100, reduction="none").sum(1)

    def forward(self, model: Model, batch: Batch) -> Outputs:
        """Per sentence: each word's predicted tag id and its probability, and the words' offsets."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        probs, ids = torch.softmax(logits, -1).max(-1)
        words, probs, ids = batch["words"].cpu().numpy(), probs.cpu().numpy(), ids.cpu().numpy()
        starts, ends = batch["starts"].cpu().numpy(), batch["ends"].cpu().numpy()
        out: Outputs = {key: np.empty(len(words), dtype=object) for key in ("tags", "probs", "starts", "ends")}
        for row in range(len(words)):
            n, heads = int((starts[row] >= 0).sum()), words[row] >= 0
            out["tags"][row], out["probs"][row] = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.float32)
            out["tags"][row][words[row][heads]] = ids[row][heads]
            out["probs"][row][words[row][heads]] = probs[row][heads]
            out["starts"][row], out["ends"][row] = starts[row][:n], ends[row][:n]
        if "labels" in batch:
            losses = F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=-100, reduction="none")
            out["loss"] = losses.sum(1).detach().cpu().numpy()
            out["targets"] = (batch["labels"] != -100).sum(1).cpu().numpy()
        return out

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        from lmforge.evaluate.entity_metrics import entity_metrics

        true = [self._names(f["gold"]) for f in features]
        metrics = entity_metrics(true, [self._names(t) for t in outputs["tags"]])
        scored = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if "loss" in outputs:
            scored["loss"] = float(outputs["loss"].sum() / max(outputs["targets"].sum(), 1))
        return scored

    def _names(self, ids: Any) -> list[str]:
        return [self.label_names[int(i)] for i in ids]

    # ---- results ----------------------------------------------------------------------------
    def predictions(self, outputs: Outputs) -> list[dict[str, Any]]:
        """Per text: its entities as character spans [start, end) with a type and the mean tag probability."""
        records = []
        for tags, probs, starts, ends in zip(outputs["tags"], outputs["probs"], outputs["starts"], outputs["ends"]):
            spans = tags_to_spans(self._names(tags))[0]
            records.append({ENTITIES: [{"start": int(starts[s.start]), "end": int(ends[s.end - 1]), "label": s.label,
                                        "score": round(float(probs[s.start:s.end].mean()), 6)} for s in spans]})
        return records

    def report(self, loaded: Loaded, split: Split) -> tuple[Metrics, Examples]:
        """Entity scores of a loaded model on `split`, and its sentences with the most wrong entities."""
        outputs = loaded.outputs(split)
        metrics, examples = self._report(split, [self._names(t) for t in outputs["tags"]])
        if "loss" in outputs:
            metrics["loss"] = float(outputs["loss"].sum() / max(outputs["targets"].sum(), 1))
        return metrics, examples

    def baseline(self, train: Split, split: Split) -> tuple[Metrics, Examples]:
        """A linear-chain CRF over character features, fitted on `train`: the classical bar."""
        from lmforge.evaluate.crf import crf_tags

        predicted = crf_tags(_words(train), [self.tags(s) for s in train.sentences], _words(split))
        metrics, examples = self._report(split, predicted)
        return {"method": CRF_NAME, **metrics}, examples

    def _report(self, split: Split, predicted: list[list[str]], limit: int = 50) -> tuple[Metrics, Examples]:
        from lmforge.evaluate.entity_metrics import entity_metrics

        metrics = entity_metrics([self.tags(s) for s in split.sentences], predicted)
        examples: Examples = []
        for sentence, tags in zip(split.sentences, predicted):
            gold, pred = set(sentence.char_spans(sentence.spans or [])), set(sentence.char_spans(tags_to_spans(tags)[0]))
            if gold != pred:
                examples.append({"text": sentence.text, "label": _describe(sentence.text, gold),
                                 "pred": _describe(sentence.text, pred), "confidence": None,
                                 "gold_spans": _as_lists(gold), "pred_spans": _as_lists(pred),
                                 "wrong": len(gold ^ pred)})
        return metrics, sorted(examples, key=lambda e: -e["wrong"])[:limit]


def word_marker(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The id of a SentencePiece tokenizer's bare word-start piece "▁" (XLM-R, mT5), else None.

    Why: split into words, every Chinese character becomes its own word, and such a tokenizer writes
    each as ["▁", "江"] — the same content-free "▁" would be every character's first sub-token (the one
    that carries its label) and the sequence twice as long. Running Chinese text is tokenised into bare
    character pieces, so dropping a lone "▁" before another piece of the same word gives the model the
    pieces it was pretrained on."""
    marker = tokenizer.convert_tokens_to_ids("▁")
    return marker if isinstance(marker, int) and marker != tokenizer.unk_token_id else None


def fit_tokens(ids: list[int], word_ids: list[int | None], marker: int | None,
               max_length: int) -> tuple[list[int], list[int | None]]:
    """A sentence's tokens without lone word-start markers (see `word_marker`), cut to `max_length`
    with its closing special token kept."""
    keep = [j for j in range(len(ids)) if not (ids[j] == marker and word_ids[j] is not None
                                               and j + 1 < len(ids) and word_ids[j + 1] == word_ids[j])]
    if len(keep) > max_length:
        closing = word_ids[keep[-1]] is None
        keep = keep[: max_length - 1] + [keep[-1]] if closing else keep[:max_length]
    return [ids[j] for j in keep], [word_ids[j] for j in keep]


def first_subtokens(word_ids: list[int | None]) -> list[int]:
    """Per token, the index of the word it starts, or -1 (special tokens and later sub-tokens)."""
    heads, seen = [], set()
    for w in word_ids:
        heads.append(w if w is not None and w not in seen else -1)
        if w is not None:
            seen.add(w)
    return heads


def _pad(rows: list[list[int]], fill: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), fill, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def _words(split: Split) -> list[list[str]]:
    return [[s.text[a:b] for a, b in s.words] for s in split.sentences]


def _describe(text: str, spans: set[Span]) -> str:
    return "; ".join(f"{s.label} {text[s.start:s.end]}" for s in sorted(spans, key=lambda s: s.start)) or "(none)"


def _as_lists(spans: set[Span]) -> list[list[Any]]:
    return [[s.start, s.end, s.label] for s in sorted(spans, key=lambda s: s.start)]


def _redaction_moves_offsets(rows: list[Row]) -> list[Problem]:
    """data.redact_pii rewrites texts, so character offsets of entities would point at other text."""
    spanned = next((row for row in rows if ENTITIES in row.values), None)
    return [] if spanned is None else [Problem(spanned.location, ENTITIES, "data.redact_pii would move the entities' "
                                               "character offsets; redact before annotating, or use tokens + tags")]
