"""Pretraining objectives on the one loop: masked LM (BERT-style encoder) and causal LM (Llama-style).

Data is a corpus tokenised once into a memory-mapped token file and served as fixed-length
blocks (`lmforge.data.shards`), so no compute goes to padding. The MLM vocabulary projection runs
only at the masked positions (`models.lm_head`): for a small encoder it costs more than all the
transformer layers, and 85% of its output would be thrown away by the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.config import Config
from lmforge.data.corpus import Subset
from lmforge.data.shards import Blocks, encode_tokens, open_blocks, write_tokens
from lmforge.data.source import read_corpus
from lmforge.data.validate import stratified_split
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.models.lm_head import IGNORE, output_layer, projects_plainly, token_losses
from lmforge.registry import register_task
from lmforge.runtime.collate import PAD_MULTIPLE, Batch, Feature, Features
from lmforge.tasks.contracts import Data, Examples, Metrics, Model, Outputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.inference import Loaded


@dataclass
class TextSplit:
    name: str  # "train" | "validation": names the token file under <output_dir>/tokens; "" : in memory
    source: str
    texts: Sequence[str]  # a built corpus is read from disk on demand

    @property
    def locations(self) -> list[str]:
        return [f"{self.source}: document {i}" for i in range(len(self.texts))]


@register_task("pretrain")
def build(cfg: Config) -> "Pretrain":
    if cfg.objective not in ("mlm", "clm"):
        raise LmforgeError(f"objective must be mlm (masked LM, encoder) or clm (causal LM, decoder), not '{cfg.objective}'")
    shortest = 3 if cfg.objective == "mlm" else 2  # [CLS] + one token + [SEP]; one token and its successor
    if cfg.model.max_length < shortest:
        raise LmforgeError(f"config key 'model.max_length': {cfg.model.max_length} leaves no text in a "
                           f"{cfg.objective} block: at least {shortest}")
    return Pretrain(cfg)


def mask_tokens(ids: torch.Tensor, maskable: torch.Tensor, probability: float, mask_id: int, vocab_size: int,
                word_starts: torch.Tensor | None = None, generator: torch.Generator | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `probability` of the maskable tokens (whole words when `word_starts` is
    given); of those, 80% become [MASK], 10% a random token, 10% stay. Returns (inputs, labels)."""
    draw = torch.rand(ids.shape, generator=generator)
    if word_starts is None:
        chosen = draw < probability
    else:  # one draw per word, taken at its first token and copied to the rest of the word
        word = torch.cumsum(word_starts.long(), dim=1)
        per_word = torch.zeros(ids.shape[0], ids.shape[1] + 1, dtype=torch.bool)
        per_word.scatter_(1, word * word_starts.long(), (draw < probability) & word_starts.bool())
        per_word[:, 0] = False  # tokens before the block's first word start belong to a cut word
        chosen = per_word.gather(1, word)
    chosen &= maskable
    labels = torch.where(chosen, ids, IGNORE)
    how = torch.rand(ids.shape, generator=generator)
    inputs = torch.where(chosen & (how < 0.8), mask_id, ids)
    swap = chosen & (how >= 0.8) & (how < 0.9)
    inputs = torch.where(swap, torch.randint(vocab_size, ids.shape, generator=generator), inputs)
    return inputs, labels


class Pretrain:
    name = "pretrain"
    default_metric = "loss"
    config_groups = ("pretrain",)

    def __init__(self, cfg: Config):
        self.cfg, self.p = cfg, cfg.pretrain
        self.mlm = cfg.objective == "mlm"
        self.auto_class = "AutoModelForMaskedLM" if self.mlm else "AutoModelForCausalLM"
        self.specials: list[int] = []
        self.chunked = False

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> Data[TextSplit]:
        d = self.cfg.data
        if not d.train:
            raise LmforgeError("data.train is empty: give a corpus folder (lmforge corpus build) or text files")
        texts = read_corpus(d.train, d)
        if d.validation:
            train = TextSplit("train", d.train, texts)
            validation = TextSplit("validation", d.validation, read_corpus(d.validation, d))
        else:
            if len(texts) < 2:
                raise LmforgeError(f"{d.train}: a single document cannot be split for validation; give data.validation")
            keep, held = stratified_split(["all"] * len(texts), d.validation_fraction, self.cfg.train.seed)
            train = TextSplit("train", d.train, Subset(texts, keep))
            validation = TextSplit("validation", f"{d.train} (held-out {d.validation_fraction:.0%} of documents)",
                                   Subset(texts, held))
        logger.info(f"corpus: {len(train.texts)} training and {len(validation.texts)} validation documents, "
                    f"{sum(map(len, train.texts))} characters")
        return Data(train, validation, validation)

    def read_split(self, path: str) -> TextSplit:
        """A corpus to score (perplexity), tokenised in memory: it belongs to no run folder."""
        return TextSplit("", path, read_corpus(path, self.cfg.data))

    def build_model(self, data: Data[TextSplit]) -> tuple[Model, PreTrainedTokenizerBase]:
        import transformers
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, BertForMaskedLM, LlamaForCausalLM

        from lmforge.models.load import load_model, load_tokenizer
        from lmforge.models.presets import decoder_config, encoder_config

        m = self.cfg.model
        tokenizer = load_tokenizer(m)
        if self.mlm and tokenizer.mask_token_id is None:
            raise LmforgeError(f"tokenizer {m.tokenizer or m.path} has no mask token, which masked-LM needs "
                               "(train one with: lmforge tokenizer train CORPUS --kind wordpiece)")
        if not self.mlm and tokenizer.eos_token_id is None:
            raise LmforgeError(f"tokenizer {m.tokenizer or m.path} has no end-of-text token to separate documents "
                               "(train one with: lmforge tokenizer train CORPUS --kind bpe)")
        if not m.preset:
            return load_model(m, AutoModelForMaskedLM if self.mlm else AutoModelForCausalLM), tokenizer
        transformers.set_seed(self.cfg.train.seed)
        if self.mlm:
            model = BertForMaskedLM(encoder_config(m.preset, len(tokenizer), tokenizer.pad_token_id, m.max_length))
        else:
            model = LlamaForCausalLM(decoder_config(m.preset, len(tokenizer), tokenizer, m.max_length))
        logger.info(f"{type(model).__name__} from preset '{m.preset}': {model.num_parameters() / 1e6:.1f}M parameters")
        return model, tokenizer

    def bind(self, model: Model, tokenizer: PreTrainedTokenizerBase) -> None:
        from lmforge.models.load import set_dropout

        set_dropout(model, self.cfg.pretrain.dropout)
        self.tokenizer = tokenizer
        self.vocab_size = model.config.vocab_size
        self.specials = sorted(set(tokenizer.all_special_ids))
        # the loss straight from the output layer's weight, a chunk of positions at a time (models.lm_head)
        self.chunked = projects_plainly(model)

    def encode(self, split: TextSplit, tokenizer: PreTrainedTokenizerBase) -> Features:
        """Blocks of the split's tokens: a token file written once under <output_dir>/tokens for a
        run's splits, in memory for a corpus being scored. Masks of every split but the training one
        are fixed, so its losses compare across evaluations."""
        t = self.tokenizer
        separator = t.sep_token_id if self.mlm else t.eos_token_id
        words = self.mlm and self.p.whole_word_mask
        length = self.cfg.model.max_length - (2 if self.mlm else 0)  # MLM blocks get [CLS] ... [SEP]
        if split.name:
            path = Path(self.cfg.output_dir) / "tokens" / f"{split.name}.bin"
            meta = write_tokens(split.texts, t, path, separator, word_starts=words, workers=self.p.workers)
            limit = self.p.eval_blocks if split.name == "validation" else 0
            blocks, tokens = open_blocks(path, meta["dtype"], length, limit, word_starts=words), meta["tokens"]
        else:
            ids, starts = encode_tokens(split.texts, t, separator, word_starts=words)
            blocks, tokens = Blocks(ids, starts if words else None, length), len(ids)
        if len(blocks) == 0:
            raise LmforgeError(f"{split.source}: {tokens} tokens do not fill one block of {length}; "
                               "add text or lower model.max_length")
        logger.info(f"{split.name or split.source}: {tokens} tokens -> {len(blocks)} blocks of {length}")
        return _FixedMasks(blocks, self) if self.mlm and split.name != "train" else blocks

    # ---- training ---------------------------------------------------------------------------
    def collate(self, features: Features, multiple: int = PAD_MULTIPLE) -> Batch:
        """Blocks are all model.max_length long: nothing to pad, so `multiple` has nothing to round."""
        ids = torch.as_tensor(np.stack([f["input_ids"] for f in features]))
        if not self.mlm:
            labels = torch.full_like(ids, IGNORE)
            labels[:, :-1] = ids[:, 1:]
            return {"input_ids": ids, "labels": labels}
        if "labels" in features[0]:  # validation blocks carry fixed masks
            return {"input_ids": ids, "labels": torch.as_tensor(np.stack([f["labels"] for f in features]))}
        words = torch.as_tensor(np.stack([f["word_starts"] for f in features])) if "word_starts" in features[0] else None
        return self.masked(ids, words)

    def masked(self, ids: torch.Tensor, words: torch.Tensor | None, generator: torch.Generator | None = None
               ) -> Batch:
        """[CLS] block [SEP], then masked; specials (document separators included) are never masked."""
        t = self.tokenizer
        n = ids.shape[0]
        ids = torch.cat([torch.full((n, 1), t.cls_token_id), ids, torch.full((n, 1), t.sep_token_id)], dim=1)
        if words is not None:
            words = torch.cat([torch.ones(n, 1, dtype=words.dtype), words, torch.ones(n, 1, dtype=words.dtype)], dim=1)
        maskable = ~torch.isin(ids, torch.tensor(self.specials))
        inputs, labels = mask_tokens(ids, maskable, self.p.mlm_probability, t.mask_token_id, self.vocab_size,
                                     words, generator)
        return {"input_ids": inputs, "labels": labels}

    def count(self, feature: Feature) -> float:
        """CLM: every next token. MLM: the expected number of masked tokens, because the actual
        mask is drawn later, at collate time; the expectation keeps each step's gradient unbiased."""
        if "labels" in feature:
            return int((feature["labels"] != IGNORE).sum())
        if not self.mlm:
            return len(feature["input_ids"]) - 1
        maskable = len(feature["input_ids"]) - int(np.isin(feature["input_ids"], self.specials).sum())
        return self.p.mlm_probability * maskable

    def loss(self, model: Model, batch: Batch) -> torch.Tensor:
        return self._losses(model, batch).sum()

    def forward(self, model: Model, batch: Batch) -> Outputs:
        """Summed loss and label count per block, and the sum of its positions' unit-length
        representations at the output layer (what `score` measures collapse with)."""
        directions: list[torch.Tensor] = []
        head = output_layer(model)
        # registered before token_losses' own hook, so it sees every position, not only the labelled ones
        hook = head.register_forward_pre_hook(
            lambda _, args: directions.append(F.normalize(args[0].float(), dim=-1).sum(1)))
        try:
            losses = self._losses(model, batch)
        finally:
            hook.remove()
        return {"loss_sum": losses.double().sum(1).cpu().numpy(),
                "count": (batch["labels"] != IGNORE).sum(1).cpu().numpy(),
                "direction_sum": directions[0].double().cpu().numpy(),
                "positions": np.full(len(batch["input_ids"]), batch["input_ids"].shape[1])}

    def _losses(self, model: Model, batch: Batch) -> torch.Tensor:
        """Token losses (fp32) at labelled positions, (batch, most labels in a row), 0-padded."""
        return token_losses(model, batch["labels"], chunked=self.chunked, input_ids=batch["input_ids"])

    def score(self, outputs: Outputs, features: Features) -> dict[str, float]:
        loss = float(outputs["loss_sum"].sum() / max(outputs["count"].sum(), 1))
        similarity = token_similarity(outputs["direction_sum"], int(outputs["positions"].sum()))
        warning = collapse_warning(similarity)
        if warning:
            logger.warning(f"validation: {warning}")
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "token_similarity": similarity}

    def report(self, loaded: Loaded, split: TextSplit) -> tuple[Metrics, Examples]:
        """Loss, perplexity and token similarity of a loaded model on a corpus (a warning when its
        representations collapsed); a language model has no errors to list."""
        outputs = loaded.outputs(split)
        scored = self.score(outputs, [])
        warnings = [w for w in [collapse_warning(scored["token_similarity"])] if w]
        return {**scored, "tokens_scored": int(outputs["count"].sum()), "warnings": warnings}, []

    def flops_per_token(self, model: Model) -> float:
        """Training FLOPs per input token (forward + backward), for MFU: 6 x the weights each token
        meets in matmuls, plus attention (PaLM appendix B). The MLM output layer counts only at the
        masked share of positions, which is all it is computed for."""
        c = model.config
        attention = 12 * c.num_hidden_layers * c.hidden_size * self.cfg.model.max_length
        skipped = (1 - self.p.mlm_probability) * model.get_output_embeddings().weight.numel() if self.mlm else 0
        return 6 * (_linear_params(model) - skipped) + attention


COLLAPSED_SIMILARITY = 0.95  # random weights: ~0.35; a healthy pretrained mini: 0.3-0.4; collapsed: > 0.99


def token_similarity(direction_sums: np.ndarray, positions: int) -> float:
    """Mean cosine similarity between the representations of any two positions, from each block's sum of
    unit vectors: with S their total over n positions, the pairs' cosines sum to |S|^2 - n."""
    total = direction_sums.sum(0)
    return float((total @ total - positions) / max(positions * positions - positions, 1))


def collapse_warning(similarity: float) -> str:
    """Said when every position looks the same to the output layer: the model predicts the corpus'
    token frequencies whatever the input (the 'unigram plateau' a too-short or too-hot run stays on).
    Fine-tuning such an encoder does worse than random weights, so the run must say so."""
    if similarity < COLLAPSED_SIMILARITY:
        return ""
    return (f"COLLAPSED: every token's representation is nearly the same (mean cosine {similarity:.3f}): the model "
            "ignores its input and predicts token frequencies; fine-tuned, it will do worse than random weights. "
            "Train longer, or with a lower train.lr and a longer train.warmup_ratio")


class _FixedMasks(Sequence[Feature]):
    """Validation blocks with masks drawn once from (seed, block index): every evaluation scores the
    same masked positions, so validation losses are comparable across steps and runs."""

    def __init__(self, blocks: Blocks, task: Pretrain):
        self.blocks, self.task = blocks, task

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> Feature:  # type: ignore[override]
        f = self.blocks[i]
        g = torch.Generator().manual_seed(self.task.cfg.train.seed * 1_000_003 + i)
        words = torch.as_tensor(f["word_starts"])[None] if "word_starts" in f else None
        out = self.task.masked(torch.as_tensor(f["input_ids"])[None], words, g)
        return {"input_ids": out["input_ids"][0].numpy(), "labels": out["labels"][0].numpy()}


def _linear_params(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))
