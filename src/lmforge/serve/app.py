"""The FastAPI app: `create_app(model_path, ...)` for Python and tests, `run(...)` for `lmforge serve`.

Routes are thin: validate (schemas), check limits, hand work to the batcher or the engine, shape the
OpenAI-style response (`/v1/classify` and `/v1/ner` share every guard and the batch queue).
Middleware (outermost first): metrics, API key, body size.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.explain import Budget
from lmforge.inference import load
from lmforge.log import logger
from lmforge.serve import openai_routes
from lmforge.serve.batcher import Batcher
from lmforge.serve.engine import Engine
from lmforge.serve.guards import ApiKey, BodyLimit, check_model, check_texts, error_body, submit
from lmforge.serve.metrics import Metrics, MetricsMiddleware
from lmforge.serve.schemas import ClassifyRequest, ExplainRequest

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def create_app(model_path: str | Path, api_key: str | None = None, max_batch: int = 16, max_wait_ms: float = 5,
               max_queue: int = 256, max_body_bytes: int = 1_000_000, max_inputs: int = 64, max_tokens: int = 512,
               timeout_s: float = 60, precision: str = "auto", template: str | None = None, quantize: str = "",
               max_batch_tokens: int = 2048, compile: bool = False, prompt_lookup: int = 0) -> FastAPI:
    """An app serving the lmforge model folder `model_path` (its name in the API is the folder name).

    Chat prompts use the template saved with the model, or `template` (see `lmforge.load`); `quantize`
    "int8" quantizes the model on load. Queued texts are grouped by length into forward passes of at
    most `max_batch_tokens` padded tokens (and `max_batch` texts or prompts). `compile` and
    `prompt_lookup` turn on the model's `generation.compile` / `generation.prompt_lookup` (greedy
    decoding); a compiled step is compiled here, before the first request.
    """
    loaded = load(model_path, precision=precision, template=template, quantize=quantize)
    generation = loaded.cfg.generation
    generation.compile = generation.compile or compile
    generation.prompt_lookup = prompt_lookup or generation.prompt_lookup
    engine = Engine(loaded, Path(model_path).resolve().name)
    engine.warm_up()
    batcher = Batcher(engine.run, max_batch, max_wait_ms, max_queue, cost=engine.tokens, max_tokens=max_batch_tokens)
    metrics = Metrics(batcher.queue.qsize)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="lmforge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.batcher, app.state.metrics = engine, batcher, metrics
    app.state.limits = {"max_inputs": max_inputs, "max_tokens": max_tokens, "timeout_s": timeout_s,
                        "max_streams": max_batch}
    app.state.streams = 0
    _add_errors(app)
    _add_routes(app)
    openai_routes.add(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(ApiKey, key=api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def run(model: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, max_batch: int = 16,
        precision: str = "auto", template: str | None = None, quantize: str = "", max_batch_tokens: int = 2048,
        compile: bool = False, prompt_lookup: int = 0) -> None:
    """Serve `model` until interrupted (the `lmforge serve` command)."""
    import uvicorn

    app = create_app(model, api_key=api_key, max_batch=max_batch, precision=precision, template=template,
                     quantize=quantize, max_batch_tokens=max_batch_tokens, compile=compile,
                     prompt_lookup=prompt_lookup)
    if host not in LOOPBACK and not api_key:
        logger.warning(f"serving on {host} without --api-key: anyone who can reach this port can use the model")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return app.state.metrics.render()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        engine = app.state.engine
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "owned_by": "lmforge",
                                            "task": engine.kind}]}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        engine = app.state.engine
        _check_classifier(engine, body.model, engine.classifies)
        texts = check_texts(app, body.input)
        # Each text is its own queue item so texts of many requests share forward passes.
        results = await asyncio.gather(*(submit(request, ("classify", t)) for t in texts))
        return {"object": "list", "data": list(results), "model": engine.name}

    @app.post("/v1/ner")
    async def ner(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        """Entities of each text as character spans [start, end) with a type and a score."""
        engine = app.state.engine
        check_model(engine, body.model, engine.tags_spans, "a token-classification (ner) model")
        texts = check_texts(app, body.input)
        results = await asyncio.gather(*(submit(request, ("ner", t)) for t in texts))
        return {"object": "list", "data": list(results), "model": engine.name}

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest, request: Request) -> dict[str, Any]:
        engine = app.state.engine
        _check_classifier(engine, body.model, engine.explains)
        texts = check_texts(app, body.input)
        long = [i for i, t in enumerate(texts) if body.method == "shap" and engine.count(t) > Budget.shap_max_tokens]
        if long:
            raise HTTPException(422, f"input {long[0]} is over {Budget.shap_max_tokens} tokens, the most shap "
                                     "explains: use method ig or occlusion")
        results = await asyncio.gather(*(submit(request, ("explain", (t, body.method))) for t in texts))
        return {"object": "list", "data": list(results), "model": engine.name}


def _check_classifier(engine: Engine, name: str | None, able: bool) -> None:
    """404/400 as `check_model`, and 400 for an encoder whose classification head is untrained noise."""
    check_model(engine, name, able, "a classification model")
    if engine.headless:
        raise HTTPException(400, f"'{engine.name}' is an encoder without a trained classification head; "
                                 "use /v1/embeddings")


def _add_errors(app: FastAPI) -> None:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error", 504: "timeout_error"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "error")),
                            exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse(error_body(422, f"invalid request: {problems}", "invalid_request_error"), 422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.error(f"{request.url.path} failed: {exc!r}")  # details stay in the server log
        return JSONResponse(error_body(500, "internal server error", "server_error"), 500)
