"""`lmforge serve MODEL`: an OpenAI-compatible HTTP server (see `lmforge.serve`)."""

from lmforge.serve.app import run

__all__ = ["run"]
