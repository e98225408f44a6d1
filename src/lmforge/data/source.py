"""Reading a configured data file: the format reader, then the optional PII redaction step."""

from __future__ import annotations

from lmforge.config import DataConfig
from lmforge.data.readers import Row, read_rows
from lmforge.log import logger


def read_data(path: str, cfg: DataConfig) -> list[Row]:
    """Rows of `path` decoded with `data.encoding` (decrypted with `data.key_file` if it is a .enc
    file); personal data replaced when `data.redact_pii`."""
    rows = read_rows(path, cfg.encoding, cfg.key_file)
    if cfg.redact_pii:
        from lmforge.privacy.pii import redact_rows

        rows, counts, changed = redact_rows(rows)
        found = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()) if n) or "none"
        logger.info(f"{path}: redacted personal data in {changed} rows ({found})")
    return rows
