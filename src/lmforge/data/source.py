"""Reading configured data: the one path every task's data takes, for tables and raw corpora alike.

`data.encoding`, `data.key_file` (files encrypted by `lmforge encrypt`), `data.text_column` and
`data.redact_pii` apply here, so no task can read its data around them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from lmforge.config import DataConfig
from lmforge.data.corpus import load_texts
from lmforge.data.readers import Row, read_rows
from lmforge.data.translation import pair_paths, read_pair
from lmforge.log import logger


def read_data(path: str, cfg: DataConfig) -> list[Row]:
    """Rows of a table file (.csv .tsv .jsonl .json .parquet, a datasets folder) or of two aligned
    text files `SOURCE,TARGET` (translation), personal data replaced when `data.redact_pii`."""
    pair = pair_paths(path)
    rows = read_pair(*pair, cfg.encoding, cfg.key_file) if pair else read_rows(path, cfg.encoding, cfg.key_file)
    if cfg.redact_pii:
        from lmforge.privacy.pii import redact_rows

        rows, counts, changed = redact_rows(rows)
        _log_redaction(path, counts, changed, "rows")
    return rows


def read_corpus(path: str, cfg: DataConfig) -> Sequence[str]:
    """Documents of a corpus (a `lmforge corpus build` folder, read from disk on demand, or
    .txt/.jsonl/.json files and folders; the text field of JSON is `data.text_column`), personal data
    replaced when `data.redact_pii` (the redacted copy is held in memory: for a corpus larger than
    memory, redact it once with `lmforge corpus build --redact-pii`)."""
    texts = load_texts(path, cfg.text_column, cfg.encoding, cfg.key_file)
    if not cfg.redact_pii:
        return texts
    from lmforge.privacy.pii import redact

    counts: Counter[str] = Counter()
    redacted, changed = [], 0
    for text in texts:
        text, found = redact(text)
        redacted.append(text)
        counts.update(found)
        changed += bool(found)
    _log_redaction(path, counts, changed, "documents")
    return redacted


def _log_redaction(path: str, counts: Counter[str], changed: int, unit: str) -> None:
    found = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()) if n) or "none"
    logger.info(f"{path}: redacted personal data in {changed} {unit} ({found})")
