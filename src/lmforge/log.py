"""The package logger. The CLI decides the format; library users keep control of logging."""

from __future__ import annotations

import logging

logger = logging.getLogger("lmforge")


def setup(debug: bool = False) -> None:
    """Plain `message` lines on stderr; warnings prefixed so they stand out in a long log."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Format())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    try:  # transformers' own per-file progress bars drown the training bar
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"WARNING: {text}" if record.levelno >= logging.WARNING else text
