"""`lmforge serve`: an OpenAI-compatible HTTP server for a saved model (FastAPI + uvicorn)."""

from lmforge.serve.app import create_app, run

__all__ = ["create_app", "run"]
