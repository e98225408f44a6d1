"""`lmforge tokenizer train corpus/ --kind wordpiece|bpe --vocab-size 16000 --out tok/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(action: str, inputs: list[str], out: str, kind: str = "wordpiece", vocab_size: int = 16000,
                    lowercase: bool = False, text_field: str = "text", seed: int = 0,
                    overwrite: bool = False) -> dict[str, Any]:
    """Train a tokenizer on a corpus folder (or raw text files) and print its held-out report."""
    from lmforge.data.corpus import load_texts
    from lmforge.models.tokenizer_train import train_tokenizer as train

    check_outputs([Output(out, "--out", "folder")], inputs, overwrite)

    # One built corpus is read from disk on demand; several are joined in memory.
    texts = load_texts(inputs[0], text_field) if len(inputs) == 1 else \
        [t for source in inputs for t in load_texts(source, text_field)]
    report = train(texts, Path(out), kind, vocab_size, lowercase, seed).__dict__
    print(json.dumps(report, indent=1))
    logger.info(f"tokenizer saved to {out}: {report['tokens_per_character']} tokens per character, "
                f"unknown rate {report['unknown_rate']:.2%} on held-out documents")
    return report
