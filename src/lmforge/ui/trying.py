"""The Try page: load a model folder and classify text with it, or chat with a generation model
(streamed) — through serve's `Engine` on `lmforge.load`, the code behind `lmforge serve`'s
/v1/classify and streaming /v1/chat/completions."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from lmforge.config import GenerationConfig
from lmforge.inference import load
from lmforge.serve.engine import Engine, StopCutter
from lmforge.serve.guards import check_model
from lmforge.ui.paths import Roots
from lmforge.ui.runs import discover, kind, status

LOADED_MODELS = 2  # models kept in memory; the least recently used is dropped first
PIECE_TIMEOUT_S = 60.0  # longest wait for the next generated piece of a chat answer


class ClassifyRequest(BaseModel):
    model: str  # a model folder, relative to the runs folder or inside a data root
    text: str = Field(min_length=1, max_length=10_000)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=10_000)


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1, max_length=64)


class Models:
    """Loaded engines by folder, a few at a time (loading takes seconds; memory is not free)."""

    def __init__(self) -> None:
        self.engines: OrderedDict[Path, Engine] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, folder: Path) -> Engine:
        with self.lock:
            if folder not in self.engines:
                self.engines[folder] = Engine(load(folder), folder.name)
                while len(self.engines) > LOADED_MODELS:
                    self.engines.popitem(last=False)
            self.engines.move_to_end(folder)
            return self.engines[folder]


def model_folders(roots: Roots) -> list[str]:
    """Model folders a user can try: each finished run's best/, and saved model folders (compressed ...)."""
    found = []
    for folder in discover(roots.runs):
        if kind(folder) == "model":
            found.append(roots.rel(folder))
        elif (folder / "best").is_dir() and status(folder, False) == "finished":
            found.append(roots.rel(folder / "best"))
    return found


def add(app: FastAPI) -> None:
    roots: Roots = app.state.roots
    models: Models = app.state.models

    @app.get("/api/models")
    def listed() -> list[str]:
        return model_folders(roots)

    @app.post("/api/classify")
    def classify(body: ClassifyRequest) -> dict[str, Any]:
        """The label and class probabilities of one text, as serve's /v1/classify answers."""
        engine = models.get(roots.resolve(body.model))
        check_model(engine, None, engine.classifies, "a classification model")
        return engine.classify_batch([body.text])[0]

    @app.post("/api/chat")
    def chat(body: ChatRequest) -> StreamingResponse:
        """Server-sent events: `piece` with each piece of the answer as it is generated, then `end`."""
        engine = models.get(roots.resolve(body.model))
        check_model(engine, None, engine.generates, "a generation model")
        prompt = engine.chat_prompt([m.model_dump() for m in body.messages])
        cfg = engine.config(engine.loaded.cfg.generation.max_new_tokens, None, None, None)
        return StreamingResponse(_answer(engine, prompt, cfg), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})


async def _answer(engine: Engine, prompt: str, cfg: GenerationConfig) -> AsyncIterator[str]:
    """The model's saved decoding settings; stop strings cut as serve cuts them; leaving stops generation."""
    cancel, cutter = threading.Event(), StopCutter(cfg.stop)
    pieces = engine.stream(prompt, cfg, cancel, PIECE_TIMEOUT_S)
    try:
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None and not cutter.stopped:
            if text := cutter.feed(piece):
                yield f"event: piece\ndata: {json.dumps(text, ensure_ascii=False)}\n\n"
        if tail := cutter.flush():
            yield f"event: piece\ndata: {json.dumps(tail, ensure_ascii=False)}\n\n"
        yield "event: end\ndata: null\n\n"
    finally:
        cancel.set()
