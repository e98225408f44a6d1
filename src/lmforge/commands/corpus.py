"""`lmforge corpus build` and `lmforge tokenizer train`: the two steps before pretraining.

    lmforge corpus build data/raw/ --out corpus/ [--dedup exact|minhash] [--redact-pii]
    lmforge tokenizer train corpus/ --kind wordpiece|bpe --vocab-size 16000 --out tok/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def build(action: str, inputs: list[str], out: str, dedup: str = "exact", min_chars: int = 20, max_chars: int = 0,
          redact_pii: bool = False, text_field: str = "text", strict: bool = False, encoding: str = "utf-8",
          overwrite: bool = False) -> dict[str, Any]:
    """Clean raw text files into a corpus folder (docs.jsonl + stats.json) and print its stats."""
    from lmforge.data.corpus import build_corpus

    check_outputs([Output(out, "--out", "folder")], inputs, overwrite)

    stats = build_corpus(inputs, Path(out), dedup, min_chars, max_chars, redact_pii, text_field, strict, encoding).as_dict()
    print(json.dumps({k: v for k, v in stats.items() if v}, ensure_ascii=False, indent=1))
    logger.info(f"corpus: kept {stats['documents_kept']} of {stats['documents_read']} documents "
                f"({stats['characters']} characters) in {out}")
    return stats


def train_tokenizer(action: str, inputs: list[str], out: str, kind: str = "wordpiece", vocab_size: int = 16000,
                    lowercase: bool = False, text_field: str = "text", seed: int = 0,
                    overwrite: bool = False) -> dict[str, Any]:
    """Train a tokenizer on a corpus folder (or raw text files) and print its held-out report."""
    from lmforge.data.corpus import load_texts
    from lmforge.models.tokenizer_train import train_tokenizer as train

    check_outputs([Output(out, "--out", "folder")], inputs, overwrite)

    texts = [t for source in inputs for t in load_texts(source, text_field)]
    report = train(texts, Path(out), kind, vocab_size, lowercase, seed).__dict__
    print(json.dumps(report, indent=1))
    logger.info(f"tokenizer saved to {out}: {report['tokens_per_character']} tokens per character, "
                f"unknown rate {report['unknown_rate']:.2%} on held-out documents")
    return report
