"""Vocabulary trimming: a model folder cut down to the pieces some data uses (`lmforge trim-vocab`).

A multilingual vocabulary is mostly rows a given dataset never touches (multilingual-e5-small: 96M of
its 118M parameters are the 250k-row embedding table), and on a CPU the optimizer update of those
rows dominates a fine-tuning step. Keeping only the pieces the data's texts use, plus every special
and added token, gives a standard smaller HF folder:

- the tokenizer gives the same token sequence (ids renumbered, in the old order) for every text whose
  pieces were all kept. Unigram (Viterbi) and WordPiece (greedy longest match) both keep choosing the
  same pieces when only pieces they did not choose are removed; a Unigram vocabulary also keeps its
  lowest-scoring piece, whose score sets the unknown-character penalty. Checked on every text before
  the folder appears.
- the model's input-embedding rows are the kept rows, so hidden states and logits on those texts are
  unchanged.

With `chars`, every single-character piece of the scripts the data is written in is kept too, so a
character the data happens to lack (a rare Chinese character at prediction time) is still read as
itself rather than as the unknown token (multilingual-e5-small on the zh sentiment training texts:
12,417 pieces used plus 5,167 such characters = 17,584 of 250,037 rows; 3,173 of the 3,473 test
reviews then tokenize exactly as before, the rest into smaller pieces, with no new unknown tokens).
It is the default because that costs a few MB while an unknown token throws the character away.
Pieces used fewer than `min_count` times are dropped; texts that used them are re-segmented into
the remaining pieces.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmforge.atomic import write_dir
from lmforge.config import ModelConfig
from lmforge.errors import LmforgeError
from lmforge.models.folder import CONFIG_FILE, architectures, model_folder
from lmforge.models.int8 import read_spec
from lmforge.models.load import load_tokenizer

_PREFIXES = {"Unigram": "▁", "WordPiece": "##"}  # marks a word start / continuation, not a character


@dataclass(frozen=True)
class Trimmed:
    """What trimming kept, for the command's summary."""

    rows_before: int  # embedding rows of the source model
    kept: int  # pieces (= embedding rows) of the trimmed model
    from_data: int  # of those, pieces the data uses at least min_count times
    texts: int
    covered: int  # texts whose every piece was kept: these tokenize identically


def trim_vocab(source: Path, texts: list[str], out: Path, min_count: int, chars: bool) -> Trimmed:
    """Write `source` with its vocabulary cut to what `texts` use as the model folder `out`."""
    if min_count < 1:
        raise LmforgeError(f"--min-count must be at least 1, got {min_count}")
    if not texts:
        raise LmforgeError("the data holds no text to keep pieces for")
    source = model_folder(source)
    model, tokenizer = _load(source)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = spec["model"]["type"]
    if kind not in _PREFIXES:
        raise LmforgeError(f"{source}: trim-vocab handles Unigram (SentencePiece) and WordPiece tokenizers, "
                           f"not {kind}")
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    used = {i for i, n in Counter(i for ids in encoded for i in ids).items() if n >= min_count}
    keep = sorted(used | _always_kept(spec) | (_single_chars(tokenizer.get_vocab(), kind, texts) if chars else set()))
    new_id = {old: new for new, old in enumerate(keep)}

    rows_before, covered = model.get_input_embeddings().num_embeddings, 0

    def fill(tmp: Path) -> None:
        nonlocal covered
        _trim_embeddings(model, keep, new_id)
        model.save_pretrained(tmp, safe_serialization=True)
        _save_tokenizer(tokenizer, _trimmed_spec(spec, keep, new_id), tmp)
        if (source / CONFIG_FILE).is_file():
            shutil.copy2(source / CONFIG_FILE, tmp / CONFIG_FILE)
        covered = _check_same_tokens(tmp, texts, encoded, new_id)

    write_dir(out, fill)
    return Trimmed(rows_before, len(keep), len(used), len(texts), covered)


def _load(folder: Path) -> tuple[Any, Any]:
    """The folder's model as the class its config names (a plain encoder stays one) and its tokenizer."""
    import transformers

    if read_spec(folder) or (folder / "adapter_config.json").is_file():
        raise LmforgeError(f"{folder} is an int8 or LoRA adapter folder: trim the original (or merged) model")
    names = architectures(folder)
    cls = getattr(transformers, names[0], None) if names else None
    if cls is None:
        raise LmforgeError(f"{folder}/config.json names no transformers model class (architectures: {names})")
    model = cls.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    if model.get_output_embeddings() is not None:
        raise LmforgeError(f"{folder} is a {names[0]}, whose output layer is over the vocabulary: trim-vocab "
                           "handles encoders and classifiers")
    return model, load_tokenizer(ModelConfig(path=str(folder)))


def _always_kept(spec: dict[str, Any]) -> set[int]:
    """Special and added tokens; for Unigram also the lowest-scoring piece (it sets the unknown penalty)."""
    kept = {token["id"] for token in spec["added_tokens"]}
    if spec["model"]["type"] == "Unigram":
        scores = [score for _, score in spec["model"]["vocab"]]
        kept.add(scores.index(min(scores)))
        if spec["model"].get("unk_id") is not None:
            kept.add(spec["model"]["unk_id"])
    else:
        kept.add(spec["model"]["vocab"][spec["model"]["unk_token"]])
    return kept


def script(char: str) -> str:
    """A character's script, as the first word of its Unicode name (CJK, LATIN, HIRAGANA, ...)."""
    return unicodedata.name(char, "?").split(" ")[0]


def _single_chars(vocab: dict[str, int], kind: str, texts: list[str]) -> set[int]:
    """Ids of the single-character pieces (with or without the word marker) of the texts' scripts."""
    scripts = {script(c) for text in texts for c in set(text) if not c.isspace()}
    prefix = _PREFIXES[kind]
    return {i for piece, i in vocab.items()
            if len(bare := piece.removeprefix(prefix)) == 1 and script(bare) in scripts}


def _trimmed_spec(spec: dict[str, Any], keep: list[int], new_id: dict[int, int]) -> dict[str, Any]:
    """tokenizer.json with only the kept pieces, every id renumbered."""
    spec = json.loads(json.dumps(spec))
    model = spec["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep]
        model["unk_id"] = new_id.get(model.get("unk_id"))
    else:
        model["vocab"] = {piece: new_id[i] for piece, i in model["vocab"].items() if i in new_id}
    for token in spec["added_tokens"]:
        token["id"] = new_id[token["id"]]
    spec["post_processor"] = _renumbered(spec.get("post_processor"), new_id)
    return spec


def _renumbered(node: Any, new_id: dict[int, int]) -> Any:
    """A post-processor with its special-token ids renumbered (TemplateProcessing `ids`, and the
    [token, id] pairs of Bert/RobertaProcessing)."""
    if isinstance(node, list):
        return [_renumbered(item, new_id) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "ids":
            out[key] = [new_id[i] for i in value]
        elif key in ("cls", "sep") and isinstance(value, list):
            out[key] = [value[0], new_id[value[1]]]
        else:
            out[key] = _renumbered(value, new_id)
    return out


def _save_tokenizer(tokenizer: Any, spec: dict[str, Any], folder: Path) -> None:
    """The tokenizer's own files (class, special tokens, limits) with the trimmed tokenizer.json; a full
    vocabulary file (vocab.txt, sentencepiece model) would contradict it, so none is written."""
    tokenizer.save_pretrained(folder)
    for name in tokenizer.vocab_files_names.values():
        (folder / name).unlink(missing_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


def _trim_embeddings(model: Any, keep: list[int], new_id: dict[int, int]) -> None:
    """Keep the input-embedding rows of `keep`, in order; special-token ids in the config follow."""
    table = model.get_input_embeddings()
    if keep[-1] >= table.num_embeddings:
        raise LmforgeError(f"the tokenizer has id {keep[-1]} but the model only {table.num_embeddings} embedding rows")
    config = model.config
    pad = new_id.get(config.pad_token_id) if config.pad_token_id is not None else None
    trimmed = torch.nn.Embedding(len(keep), table.embedding_dim, padding_idx=pad)
    trimmed.weight.data = table.weight.data[keep].clone()
    model.set_input_embeddings(trimmed)
    config.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        if getattr(config, name, None) is not None:
            setattr(config, name, new_id.get(getattr(config, name)))


def _check_same_tokens(folder: Path, texts: list[str], encoded: list[list[int]], new_id: dict[int, int]) -> int:
    """Texts whose pieces were all kept must tokenize to the same pieces with the trimmed tokenizer as
    the folder loads it; returns how many texts that covers."""
    trimmed = load_tokenizer(ModelConfig(path=str(folder)))
    covered = [(text, [new_id[i] for i in ids]) for text, ids in zip(texts, encoded) if all(i in new_id for i in ids)]
    if not covered:
        return 0
    again = trimmed([text for text, _ in covered], add_special_tokens=False)["input_ids"]
    for (text, expected), ids in zip(covered, again):
        if ids != expected:
            raise LmforgeError(f"trimmed tokenizer splits {text[:60]!r} differently ({ids[:12]} vs {expected[:12]}); "
                               "nothing was written")
    return len(covered)
