"""Knowledge-base question answering: find the stored question (or passage) nearest to a new one.

An index is a folder: `embeddings.npy` (one unit-length float32 row per entry), `entries.jsonl`
(`{"question"|"text": ..., "answer": ...}` in the same order) and `index.json` (encoder, kind,
count, dim). Questions are embedded with the same encoder, so cosine similarity is a dot product.
Answers are either the best entry's own answer (retrieval only) or written by a generation model
from the retrieved entries (retrieval-augmented generation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lmforge.atomic import write_dir
from lmforge.data.conversations import detect_format, to_conversations
from lmforge.data.readers import Row, read_rows
from lmforge.decoding import generate, rag_prompt
from lmforge.errors import DataError, LmforgeError, Problem
from lmforge.log import logger
from lmforge.models.folder import load_placed
from lmforge.outputs import Output, check_outputs
from lmforge.runtime.device import autocast

if TYPE_CHECKING:
    from lmforge.inference import Loaded

INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.npy"
ENTRIES_FILE = "entries.jsonl"

# Questions scored against the whole index at once; bounds the (questions x entries) score matrix.
_SCORE_CHUNK = 256


@torch.no_grad()
def encode_texts(model: Any, tokenizer: Any, texts: list[str], device: torch.device, precision: str,
                 batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """Unit-length float32 sentence vectors: the encoder's last hidden states averaged over real tokens.

    Mean pooling works for any HF encoder and is what sentence-transformers models such as
    all-MiniLM are trained with. Texts are batched by length so short ones are not padded to the
    longest of the whole list; rows come back in the order of `texts`.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        with autocast(precision, device):
            hidden = model(**enc).last_hidden_state
        vectors[chunk] = _mean_pool(hidden.float(), enc["attention_mask"]).cpu().numpy()
    return vectors


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average over unpadded tokens, then L2-normalise so a dot product is the cosine."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1)


@dataclass
class _Encoder:
    """An encoder model with its tokenizer, placed on a device in a precision."""

    model: Any
    tokenizer: Any
    device: torch.device
    precision: str

    def encode(self, texts: list[str]) -> np.ndarray:
        return encode_texts(self.model, self.tokenizer, texts, self.device, self.precision)


def _load_encoder(encoder: str, precision: str) -> _Encoder:
    """An encoder from a local folder, hub id or GGUF file, loaded without a task head."""
    placed = load_placed(encoder, "AutoModel", precision)
    return _Encoder(placed.model, placed.tokenizer, placed.device, placed.precision)


def _resolved_encoder(encoder: str) -> str:
    """An absolute folder for local encoders (the index may be used from another directory), else the hub id."""
    from lmforge.models.load import as_folder

    folder = as_folder(encoder)
    return str(Path(folder).resolve()) if Path(folder).exists() else folder


# ---------------------------------------------------------------------------- building

def build_index(source: str, out: Path, encoder: str, encoding: str = "utf-8",
                precision: str = "auto", overwrite: bool = False) -> dict:
    """Embed the questions of a Q&A file (or the passages of a `text` file) into an index folder.

    Q&A files may be in any format `detect_format` accepts; the first user turn of each
    conversation is indexed and the assistant turn after it is kept as the answer. Without a Q&A
    format, a `text` column makes each row a passage that is its own answer. `out` is written
    whole or not at all; an existing non-empty `out` is replaced only with `overwrite`. Returns
    index.json.
    """
    out = Path(out)
    check_outputs([Output(out, "--out", "folder")], [source, encoder], overwrite)
    kind, entries = _read_entries(source, encoding)
    vectors = _load_encoder(encoder, precision).encode([_key(e) for e in entries])
    info = {"encoder": _resolved_encoder(encoder), "kind": kind, "count": len(entries),
            "dim": int(vectors.shape[1])}
    _write_index(out, vectors, entries, info)
    logger.info(f"indexed {len(entries)} {kind} entries ({info['dim']}-dim vectors) into {out}")
    return info


def _read_entries(source: str, encoding: str) -> tuple[str, list[dict[str, str]]]:
    """("qa" | "documents", entries) from a data file, every row checked first."""
    rows = read_rows(source, encoding)
    if not rows:
        raise LmforgeError(f"{source}: no rows to index")
    try:
        fmt = detect_format(rows)
    except LmforgeError as exc:
        if not any("text" in row.values for row in rows[:10]):
            raise LmforgeError(f"{source}: {exc}\n  documents: column text (one passage per row)") from None
        return "documents", _documents(rows)
    return "qa", _qa_entries(rows, fmt)


def _qa_entries(rows: list[Row], fmt: str) -> list[dict[str, str]]:
    """The first user turn and its reply; later turns depend on context a lone question lacks."""
    entries = []
    for _, conversation in to_conversations(rows, fmt):
        first = next(i for i, m in enumerate(conversation) if m["role"] == "user")
        entries.append({"question": conversation[first]["content"], "answer": conversation[first + 1]["content"]})
    return entries


def _documents(rows: list[Row]) -> list[dict[str, str]]:
    problems = [Problem(row.location, "text", "expected a non-empty string")
                for row in rows if not _is_text(row.values.get("text"))]
    if problems:
        raise DataError(problems)
    return [{"text": row.values["text"], "answer": row.values["text"]} for row in rows]


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _key(entry: dict[str, str]) -> str:
    """What is embedded for an entry: its question, or the passage itself."""
    return entry["question"] if "question" in entry else entry["text"]


def _write_index(out: Path, vectors: np.ndarray, entries: list[dict[str, str]], info: dict) -> None:
    """The three index files, swapped in together, so a crash never leaves half an index."""

    def fill(tmp: Path) -> None:
        np.save(tmp / EMBEDDINGS_FILE, vectors)
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        (tmp / ENTRIES_FILE).write_text(lines, encoding="utf-8")
        (tmp / INDEX_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    write_dir(out, fill)


# ---------------------------------------------------------------------------- using

@dataclass
class KnowledgeBase:
    """A loaded index and its encoder, ready to search and answer."""

    info: dict
    entries: list[dict[str, str]]
    embeddings: np.ndarray
    encoder: _Encoder

    @classmethod
    def load(cls, path: str | Path, precision: str = "auto") -> KnowledgeBase:
        """Read an index folder and load the encoder it was built with (once, for every question)."""
        path = Path(path)
        if not (path / INDEX_FILE).is_file():
            raise LmforgeError(f"not a knowledge-base index (no {INDEX_FILE}): {path}")
        info = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
        embeddings = np.load(path / EMBEDDINGS_FILE, allow_pickle=False)
        lines = (path / ENTRIES_FILE).read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        if not len(entries) == len(embeddings) == info["count"]:
            raise LmforgeError(f"{path}: {len(entries)} entries, {len(embeddings)} embeddings and "
                               f"count {info['count']} disagree; rebuild the index")
        return cls(info, entries, embeddings, _load_encoder(info["encoder"], precision))

    def search(self, question: str | list[str], k: int = 5) -> list[list[tuple[float, dict]]]:
        """For each question, the k most similar entries as (cosine, entry), best first."""
        questions = [question] if isinstance(question, str) else question
        scores, ids = self._rank(questions, k)
        return [[(float(s), self.entries[i]) for s, i in zip(row_s, row_i)] for row_s, row_i in zip(scores, ids)]

    def answer(self, question: str, k: int = 3, generator: Loaded | None = None, explain: bool = False) -> dict:
        """The best entry's answer, or with `generator` an answer written from the top-k entries.

        Every result lists its sources (score plus entry) so a reader can check where it came from;
        `explain` (with a generator) adds which passages and question words the answer relied on.
        """
        hits = self.search(question, k)[0]
        sources = [{"score": score, **entry} for score, entry in hits]
        if generator is None:
            return {"answer": hits[0][1]["answer"], "score": hits[0][0], "sources": sources}
        passages = [_passage(e) for _, e in hits]
        answer = _generate(generator, rag_prompt(question, passages))
        result = {"answer": answer, "sources": sources}
        if explain:
            result["explanation"] = generator.explain_answer(question, answer=answer, passages=passages)
        return result

    def _rank(self, questions: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, entry ids) of the top-k entries per question, best first; ties keep index order."""
        if k < 1:
            raise LmforgeError(f"k must be at least 1, got {k}")
        blank = [i for i, q in enumerate(questions) if not _is_text(q)]
        if blank:
            raise LmforgeError(f"question {blank[0]} is empty or not a string")
        scores, ids = [], []
        for start in range(0, len(questions), _SCORE_CHUNK):
            sims = self.encoder.encode(questions[start : start + _SCORE_CHUNK]) @ self.embeddings.T
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            scores.append(np.take_along_axis(sims, top, axis=1))
            ids.append(top)
        if not scores:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), int)
        return np.concatenate(scores), np.concatenate(ids)


def _passage(entry: dict[str, str]) -> str:
    return entry["text"] if "text" in entry else f"Q: {entry['question']}\n   A: {entry['answer']}"


def _generate(generator: Loaded, prompt: str) -> str:
    """The generation model's answer, with its configured system prompt and decoding settings."""
    conversations = generator.generator("answer from passages").conversations([prompt])
    return generate(generator.model, generator.tokenizer, conversations, generator.cfg.generation,
                    generator.device, generator.precision)[0]


# ---------------------------------------------------------------------------- scoring

def retrieval_metrics(ranked: list[list[int]], gold: list[int], ks: Sequence[int] = (1, 3, 5)) -> dict:
    """hit@k (share of questions whose gold entry is in the top k) and MRR (0 when it is not ranked)."""
    if len(ranked) != len(gold):
        raise LmforgeError(f"{len(ranked)} rankings for {len(gold)} gold entries")
    ranks = [row.index(g) + 1 if g in row else 0 for row, g in zip(ranked, gold)]
    n = max(len(ranks), 1)
    metrics = {f"hit@{k}": sum(0 < r <= k for r in ranks) / n for k in ks}
    metrics["mrr"] = sum(1 / r for r in ranks if r) / n
    return metrics


def evaluate_retrieval(kb: KnowledgeBase, questions: list[str], gold: list[int], k: int = 5) -> dict:
    """Retrieval metrics of `kb` on questions whose right entry is known, ranking k deep.

    Entries with the same answer count as one: retrieving any of them gives the user the right
    answer, so duplicates neither steal the hit nor push the gold answer down the ranking.
    """
    bad = [g for g in gold if not 0 <= g < len(kb.entries)]
    if bad:
        raise LmforgeError(f"gold entry {bad[0]} is not in the index ({len(kb.entries)} entries)")
    first: dict[str, int] = {}
    canonical = [first.setdefault(e["answer"].strip(), i) for i, e in enumerate(kb.entries)]
    _, ids = kb._rank(questions, k)
    ranked = [list(dict.fromkeys(canonical[i] for i in row)) for row in ids.tolist()]
    ks = sorted({x for x in (1, 3, 5) if x <= k} | {k})
    return retrieval_metrics(ranked, [canonical[g] for g in gold], ks)
