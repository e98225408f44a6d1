"""Routes over run folders: the Runs list, one run (config, metrics, report, curves, live stream),
resume and cancel, Compare, and the New-run form (schema, pre-flight, start)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel

from lmforge.ui import newrun, runs
from lmforge.ui.paths import Roots
from lmforge.ui.runs import Summary

POLL_S = 0.5  # how often a live stream looks for new log lines
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".enc", ".gz")
SORTS = ("updated", "started", "path", "task", "model", "status", "best", "steps")


class NewRun(BaseModel):
    name: str
    values: dict[str, str] = {}


def add(app: FastAPI) -> None:
    roots: Roots = app.state.roots
    jobs = app.state.jobs

    def summary(folder: Path) -> Summary:
        return runs.summarize(folder, roots.rel(folder), jobs.alive(folder))

    @app.get("/api/runs")
    def listing(q: str = "", status: str = "", sort: str = "updated", desc: bool = True, offset: int = 0,
             limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """One page of runs, filtered (`q` in path, task or model; `status`) and sorted."""
        if sort not in SORTS:
            raise HTTPException(422, f"sort must be one of {', '.join(SORTS)}")
        rows = [summary(folder) for folder in runs.discover(roots.runs)]
        counts = {s: sum(r.status == s for r in rows) for s in ("running", "finished", "failed", "interrupted")}
        rows = [r for r in rows if (not status or r.status == status) and _matches(r, q.lower())]
        rows.sort(key=lambda r: _sort_key(getattr(r, sort)), reverse=desc)
        return {"total": len(rows), "counts": counts, "runs": [r.as_dict() for r in rows[offset: offset + limit]]}

    @app.get("/api/run")
    def run(path: str) -> dict[str, Any]:
        folder = roots.run_dir(path)
        if not folder.is_dir() and jobs.alive(folder) is None:  # a run just started has no folder for a while
            raise HTTPException(404, f"no run folder '{path}'")
        parts = sorted(p.name for p in folder.glob("*/") if p.name not in ("tensorboard", "tokens"))
        return {"summary": summary(folder).as_dict(), "config": runs.read_config(folder),
                "metrics": runs.read_json(folder / "metrics.json"), "report": (folder / "report.html").is_file(),
                "folders": parts, "output": jobs.output(folder)}

    @app.get("/api/run/report")
    def report(path: str) -> HTMLResponse:
        """The run's report.html, sandboxed even when opened on its own: it shows data, it runs nothing."""
        file = roots.run_dir(path) / "report.html"
        if not file.is_file():
            raise HTTPException(404, f"'{path}' has no report.html yet")
        return HTMLResponse(file.read_text(encoding="utf-8"), headers={"Content-Security-Policy": "sandbox"})

    @app.get("/api/run/log")
    def log(path: str, max_points: Annotated[int, Query(ge=10, le=100_000)] = 2000) -> dict[str, Any]:
        """The run's curves, downsampled; `offset` is where a live stream continues."""
        lines, offset = runs.read_lines(roots.run_dir(path) / "train_log.jsonl")
        return {"records": runs.parse(runs.downsample(lines, max_points)), "lines": len(lines), "offset": offset}

    @app.get("/api/run/stream")
    async def stream(path: str, request: Request, offset: int = 0) -> StreamingResponse:
        """Server-sent events: `records` with each batch of new log lines, `end` once the run stops."""
        folder = roots.run_dir(path)
        return StreamingResponse(_tail(folder, offset, request, lambda: jobs.alive(folder)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/api/run/resume")
    def resume(path: str) -> dict[str, str]:
        folder = roots.run_dir(path)
        if runs.status(folder, jobs.alive(folder)) != "interrupted":
            raise HTTPException(409, f"'{path}' is not an interrupted run")
        newrun.resume(jobs, roots, folder)
        return {"path": path}

    @app.post("/api/run/cancel")
    def cancel(path: str) -> dict[str, str]:
        folder = roots.run_dir(path)
        jobs.cancel(folder)
        return {"path": path, "status": runs.status(folder, False)}

    @app.get("/api/compare")
    def compare(path: Annotated[list[str], Query()]) -> dict[str, Any]:
        """Two or more runs: summaries, every scalar metric side by side, and the config keys that differ."""
        folders = [roots.run_dir(p) for p in path]
        metrics = [runs.read_json(f / "metrics.json") for f in folders]
        configs = [_flat(runs.read_config(f)) for f in folders]
        keys = sorted({k for m in metrics for k, v in m.items() if isinstance(v, (int, float))})
        differ = sorted(k for k in {k for c in configs for k in c} if len({json.dumps(c.get(k)) for c in configs}) > 1)
        return {"runs": [summary(f).as_dict() for f in folders],
                "metrics": [{"key": k, "values": [m.get(k) for m in metrics]} for k in keys],
                "config": [{"key": k, "values": [c.get(k) for c in configs]} for k in differ]}

    @app.get("/api/schema")
    def schema() -> list[dict[str, Any]]:
        return newrun.schema()

    @app.get("/api/files")
    def files() -> list[str]:
        """Data files under the --data roots, offered by the form's data fields."""
        return roots.files(DATA_SUFFIXES)

    @app.post("/api/preflight")
    def preflight(body: NewRun) -> dict[str, Any]:
        cfg, _ = newrun.build(roots, body.name, body.values)
        return newrun.preflight(cfg)

    @app.post("/api/start")
    def start(body: NewRun) -> dict[str, str]:
        """Check the form and its data as pre-flight does, then start the run; data problems refuse it."""
        cfg, overrides = newrun.build(roots, body.name, body.values)
        found = newrun.preflight(cfg)
        if not found["ok"]:
            raise HTTPException(422, "data problems: " + "; ".join(found["problems"][:5]))
        newrun.start(jobs, cfg, overrides)
        return {"path": body.name}


async def _tail(folder: Path, offset: int, request: Request, alive: Any) -> AsyncIterator[str]:
    log = folder / "train_log.jsonl"
    while True:
        running = runs.status(folder, alive()) == "running"  # read before the log, so no last lines are missed
        records, offset = runs.read_records(log, offset)
        if records:
            yield f"id: {offset}\nevent: records\ndata: {json.dumps(records)}\n\n"
        if not running:
            yield f"event: end\ndata: {json.dumps(runs.status(folder, alive()))}\n\n"
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)


def _matches(row: Summary, q: str) -> bool:
    return not q or any(q in field.lower() for field in (row.path, row.task, row.model))


def _sort_key(value: Any) -> tuple[int, Any]:
    """Missing values sort after every present one (either direction puts them together)."""
    return (0, 0) if value is None else (1, value)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
