"""The UI's FastAPI app: `create_app(runs, data, api_key)` for Python and tests, `run(...)` for `lmforge ui`.

The page and its scripts are open (they hold no data); every /api route needs the API key when one
is set — serve's own `ApiKey` and `BodyLimit` guards. Paths in requests are checked by `Roots`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.serve.app import LOOPBACK
from lmforge.serve.guards import OPEN_PATHS, ApiKey, BodyLimit, error_body
from lmforge.ui import api, trying
from lmforge.ui.jobs import Jobs
from lmforge.ui.newrun import FieldError, key_in
from lmforge.ui.paths import Refused, Roots

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}


def create_app(runs: str | Path = "runs", data: list[str] | None = None, api_key: str | None = None) -> FastAPI:
    """The UI over the run folders under `runs`; data files may be picked from `data` roots too."""
    roots = Roots.of(runs, data)
    roots.runs.mkdir(parents=True, exist_ok=True)
    jobs = Jobs()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.stop_all()

    app = FastAPI(title="lmforge ui", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.roots, app.state.jobs, app.state.models = roots, jobs, trying.Models()
    files = {f"/static/{p.relative_to(STATIC).as_posix()}": p for p in STATIC.rglob("*") if p.is_file()}
    _add_pages(app, files)
    _add_errors(app)
    api.add(app)
    trying.add(app)
    app.add_middleware(BodyLimit, limit=1_000_000)
    app.add_middleware(ApiKey, key=api_key, open_paths={*OPEN_PATHS, "/", *files})
    return app


def run(runs: str = "runs", host: str = "127.0.0.1", port: int = 7860, api_key: str | None = None,
        data: list[str] | None = None) -> None:
    """Serve the UI until interrupted (the `lmforge ui` command)."""
    import uvicorn

    check_outputs([Output(runs, "--runs", "folder")], overwrite=True)  # new runs go there; old ones stay
    app = create_app(runs, data, api_key)
    if host not in LOOPBACK and not api_key:
        logger.warning(f"serving the UI on {host} without --api-key: anyone who can reach this port can read "
                       "your runs and start processes")
    logger.info(f"lmforge ui: open http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ "
                f"(runs: {app.state.roots.runs})")
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)


def _add_pages(app: FastAPI, files: dict[str, Path]) -> None:
    """The page, /health, and the files shipped in static/ by exact path: nothing else on disk is reachable."""

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type=TYPES[".html"])

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/static/{name:path}")
    async def static(name: str) -> FileResponse:
        path = files.get(f"/static/{name}")
        if path is None:
            raise HTTPException(404, "not found")
        return FileResponse(path, media_type=TYPES.get(path.suffix, "application/octet-stream"))


def _add_errors(app: FastAPI) -> None:
    """A user's mistake answers with its message (and the form field it concerns); crashes stay in the log."""

    def refuse(status: int, message: str, key: str = "") -> JSONResponse:
        body = error_body(status, message, "invalid_request_error")
        body["error"]["key"] = key
        return JSONResponse(body, status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return refuse(exc.status_code, str(exc.detail))

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return refuse(403, str(exc))

    @app.exception_handler(FieldError)
    async def field(_: Request, exc: FieldError) -> JSONResponse:
        return refuse(422, str(exc), exc.key)

    @app.exception_handler(LmforgeError)
    async def mistake(_: Request, exc: LmforgeError) -> JSONResponse:
        return refuse(400, str(exc), key_in(str(exc)))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.error(f"{request.url.path} failed: {exc!r}")
        return refuse(500, "internal server error")
