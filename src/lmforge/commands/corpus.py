"""`lmforge corpus build data/raw/ --out corpus/ [--dedup exact|minhash] [--redact-pii] [--workers N]`: the first
step before pretraining (the second is `lmforge tokenizer train`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(action: str, inputs: list[str], out: str, dedup: str = "exact", min_chars: int = 20, max_chars: int = 0,
          redact_pii: bool = False, text_field: str = "text", strict: bool = False, encoding: str = "utf-8",
          overwrite: bool = False, workers: int = 1) -> dict[str, Any]:
    """Clean raw text files into a corpus folder (docs.jsonl + stats.json) and print its stats."""
    from lmforge.data.corpus import build_corpus

    check_outputs([Output(out, "--out", "folder")], inputs, overwrite)

    stats = build_corpus(inputs, Path(out), dedup, min_chars, max_chars, redact_pii, text_field, strict, encoding,
                         workers).as_dict()
    print(json.dumps({k: v for k, v in stats.items() if v}, ensure_ascii=False, indent=1))
    logger.info(f"corpus: kept {stats['documents_kept']} of {stats['documents_read']} documents "
                f"({stats['characters']} characters) in {out}")
    return stats
