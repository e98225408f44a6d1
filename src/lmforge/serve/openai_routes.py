"""OpenAI-compatible /v1/chat/completions and /v1/completions (batched, or SSE) and /v1/embeddings (batched)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from lmforge.decoding import Completion
from lmforge.log import logger
from lmforge.serve.engine import Engine, Job, StopCutter
from lmforge.serve.guards import check_count, check_model, check_texts, submit
from lmforge.serve.schemas import ChatRequest, CompletionRequest, EmbeddingRequest, Sampling


def add(app: FastAPI) -> None:
    """Register the OpenAI routes on `app` (state set up by `create_app`)."""
    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
        engine = app.state.engine
        check_model(engine, body.model, engine.classifies, "an encoder model (BERT-like)")
        dim = engine.loaded.model.config.hidden_size
        if body.dimensions not in (None, dim):
            raise HTTPException(422, f"dimensions={body.dimensions}: '{engine.name}' makes {dim}-dimensional vectors")
        texts = check_texts(app, body.input)
        done = await asyncio.gather(*(submit(request, ("embed", t)) for t in texts))
        data = [{"object": "embedding", "index": i, "embedding": _vector(v, body.encoding_format)}
                for i, (v, _) in enumerate(done)]
        tokens = sum(n for _, n in done)
        return {"object": "list", "data": data, "model": engine.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> Any:
        engine = app.state.engine
        check_model(engine, body.model, engine.generates, "a generation model")
        if body.messages[-1].role == "assistant":
            raise HTTPException(422, "the last message must be from the user or system, not the assistant")
        prompt = engine.chat_prompt([m.model_dump() for m in body.messages])
        cfg = _decoding(app, engine, body, [prompt])
        if body.stream:
            return _sse(app, engine, body, prompt, cfg, chat=True)
        done: Completion = await submit(request, ("complete", Job(prompt, cfg, strip=True)))
        app.state.metrics.tokens_generated += done.completion_tokens
        choice = {"index": 0, "message": {"role": "assistant", "content": done.text}, "finish_reason": done.finish_reason}
        return _envelope("chat.completion", engine, [choice], _usage([done]))

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        engine = app.state.engine
        check_model(engine, body.model, engine.generates, "a generation model")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        check_count(len(prompts), app.state.limits["max_inputs"], "prompts")
        if not prompts:
            raise HTTPException(422, "prompt is an empty list")
        cfg = _decoding(app, engine, body, prompts)
        if body.stream:
            if len(prompts) != 1:
                raise HTTPException(422, "streaming takes a single prompt")
            return _sse(app, engine, body, prompts[0], cfg, chat=False)
        done = await asyncio.gather(*(submit(request, ("complete", Job(p, cfg))) for p in prompts))
        app.state.metrics.tokens_generated += sum(d.completion_tokens for d in done)
        choices = [{"index": i, "text": d.text, "logprobs": None, "finish_reason": d.finish_reason}
                   for i, d in enumerate(done)]
        return _envelope("text_completion", engine, choices, _usage(done))


def _decoding(app: FastAPI, engine: Engine, body: Sampling, prompts: list[str]) -> Any:
    """The request's decoding config, after the token limits (422 naming the limit)."""
    limit = app.state.limits["max_tokens"]
    wanted = body.token_budget() or min(engine.loaded.cfg.generation.max_new_tokens, limit)
    if wanted > limit:
        raise HTTPException(422, f"max_tokens={wanted} is over the server limit of {limit} (max_tokens)")
    stops = body.stops()
    if stops is not None and (len(stops) > 4 or not all(stops)):
        raise HTTPException(422, "stop takes up to 4 non-empty strings")
    longest = max(engine.count(p) for p in prompts)
    if engine.context and longest + wanted > engine.context:
        raise HTTPException(422, f"prompt ({longest} tokens) + max_tokens ({wanted}) is over the model's "
                                 f"context of {engine.context} tokens")
    return engine.config(wanted, body.temperature, body.top_p, stops)


def _vector(vector: Any, encoding: str) -> list[float] | str:
    """A float list, or base64 of little-endian float32 bytes (what the official client asks for)."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _envelope(kind: str, engine: Engine, choices: list[dict], usage: dict | None) -> dict[str, Any]:
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    body = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": engine.name, "choices": choices}
    return body | ({"usage": usage} if usage is not None else {})


def _usage(done: list[Completion]) -> dict[str, int]:
    prompt, completion = sum(d.prompt_tokens for d in done), sum(d.completion_tokens for d in done)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(app: FastAPI, engine: Engine, body: Sampling, prompt: str, cfg: Any, chat: bool) -> StreamingResponse:
    """Server-sent events: one `data: {chunk}` per text piece, a final chunk with finish_reason, [DONE]."""
    if app.state.streams >= app.state.limits["max_streams"]:  # each stream holds a generation thread
        raise HTTPException(429, "too many streams at once (max_batch); retry later")
    app.state.streams += 1
    kind = "chat.completion.chunk" if chat else "text_completion"
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(text: str | None, finish: str | None = None, first: bool = False) -> str:
        if chat:
            delta = ({"role": "assistant"} if first else {}) | ({"content": text} if text is not None else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps(_envelope(kind, engine, [choice], None), ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        cancel, cutter, pieces = threading.Event(), StopCutter(cfg.stop), []
        try:
            if chat:
                yield chunk("", first=True)
            pieces_iter = engine.stream(prompt, cfg, cancel, app.state.limits["timeout_s"])
            while (piece := await asyncio.to_thread(next, pieces_iter, None)) is not None and not cutter.stopped:
                if text := cutter.feed(piece):
                    pieces.append(text)
                    yield chunk(text)
            if tail := cutter.flush():
                pieces.append(tail)
                yield chunk(tail)
            used = engine.count("".join(pieces))
            app.state.metrics.tokens_generated += used
            finish = "length" if not cutter.stopped and used >= cfg.max_new_tokens else "stop"
            yield chunk(None, finish)
            if include_usage:
                usage = {"prompt_tokens": engine.count(prompt), "completion_tokens": used}
                usage["total_tokens"] = usage["prompt_tokens"] + used
                yield f"data: {json.dumps(_envelope(kind, engine, [], usage))}\n\n"
            yield "data: [DONE]\n\n"
        except Exception as exc:  # noqa: BLE001 - the status is sent already; end the stream cleanly
            logger.error(f"stream failed: {exc!r}")
            yield f"data: {json.dumps({'error': {'message': 'internal server error', 'type': 'server_error'}})}\n\n"
        finally:
            cancel.set()  # the client left or we finished: stop the generation thread
            app.state.streams -= 1

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
