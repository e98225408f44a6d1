"""`lmforge ui` at the API level (FastAPI's TestClient, no browser): what a run folder's files say
about it, paging 200 runs, downsampled 100k-line logs, the live stream, the form's checks, path
safety and the API key. The browser tests are in test_ui_browser.py."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from test_generation import bpe, qa_file  # noqa: F401 - the tiny decoder's fixtures, shared

from lmforge.ui.app import create_app
from lmforge.ui.runs import RUNNING_WINDOW_S, downsample, parse, read_lines, read_records

KEY = "ui-s3cret"


def make_run(folder: Path, *, steps: int = 3, finished: bool = True, checkpoint: bool = False, age_s: float = 0.0,
             lr: float = 1e-3) -> Path:
    """A run folder as lmforge writes one: config.yaml, train_log.jsonl, and metrics.json when done."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": "classification", "model": {"preset": "tiny"},
                                                        "train": {"lr": lr, "metric": ""}}), encoding="utf-8")
    lines = [{"step": s, "epoch": s / steps, "train_loss": 1.0 / s, "lr": lr} for s in range(1, steps + 1)]
    lines.append({"step": steps, "eval_f1_macro": 0.5, "eval_loss": 0.9})
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    if finished:
        (folder / "metrics.json").write_text(json.dumps({"f1_macro": 0.75, "accuracy": 0.8}), encoding="utf-8")
    if checkpoint:
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "state.json").write_text("{}", encoding="utf-8")
    if age_s:
        past = time.time() - age_s
        for path in folder.rglob("*"):
            os.utime(path, (past, past))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "done")
    make_run(root / "中文-run", lr=2e-3)
    make_run(root / "stopped", finished=False, checkpoint=True, age_s=2 * RUNNING_WINDOW_S)
    make_run(root / "broken", finished=False, age_s=2 * RUNNING_WINDOW_S)
    make_run(root / "live", finished=False)
    return root


@pytest.fixture
def client(runs: Path):
    with TestClient(create_app(runs, [str(runs.parent / "data")])) as c:
        yield c


def test_status_comes_from_the_folder(client):
    rows = {r["path"]: r for r in client.get("/api/runs").json()["runs"]}
    assert {p: r["status"] for p, r in rows.items()} == {
        "done": "finished", "中文-run": "finished", "stopped": "interrupted", "broken": "failed", "live": "running"}
    assert rows["done"]["metric"] == "f1_macro" and rows["done"]["best"] == 0.75
    assert rows["live"]["best"] == 0.5 and rows["live"]["steps"] == 3  # from the log while it runs
    assert rows["done"]["model"] == "preset:tiny"


def test_sweeps_their_trials_and_model_folders_are_listed(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "sweep" / "trial-000")
    (root / "sweep" / "leaderboard.json").write_text("[]", encoding="utf-8")
    make_run(root / "plain")
    (root / "plain" / "best").mkdir()
    (root / "plain" / "best" / "lmforge.yaml").write_text("task: classification\n", encoding="utf-8")
    (root / "int8").mkdir()
    (root / "int8" / "lmforge.yaml").write_text("task: classification\n", encoding="utf-8")
    with TestClient(create_app(root)) as c:
        rows = {r["path"]: (r["kind"], r["status"]) for r in c.get("/api/runs").json()["runs"]}
        assert rows == {"sweep": ("sweep", "finished"), "sweep/trial-000": ("run", "finished"),
                        "plain": ("run", "finished"), "int8": ("model", "finished")}  # best/ is part of its run
        assert sorted(c.get("/api/models").json()) == ["int8", "plain/best"]


def test_the_form_offers_data_files_from_the_data_roots(client, runs):
    (runs.parent / "data" / "zh").mkdir(parents=True)
    (runs.parent / "data" / "zh" / "评论.csv").write_text("text,label\n", encoding="utf-8")
    (runs.parent / "data" / "notes.md").write_text("", encoding="utf-8")
    assert client.get("/api/files").json() == [str(runs.parent / "data" / "zh" / "评论.csv")]


def test_200_runs_page_sort_and_filter(tmp_path):
    root = tmp_path / "runs"
    for i in range(200):
        make_run(root / f"r{i:03d}", steps=1 + i % 7)
    with TestClient(create_app(root)) as c:
        page = c.get("/api/runs", params={"sort": "path", "desc": False, "offset": 50, "limit": 50}).json()
        assert page["total"] == 200 and [r["path"] for r in page["runs"]] == [f"r{i:03d}" for i in range(50, 100)]
        assert c.get("/api/runs", params={"q": "r19"}).json()["total"] == 10
        assert c.get("/api/runs", params={"sort": "steps"}).json()["runs"][0]["steps"] == 7
        assert c.get("/api/runs", params={"sort": "nonsense"}).status_code == 422


def test_a_100k_line_log_is_downsampled(tmp_path):
    log = tmp_path / "train_log.jsonl"
    with open(log, "w", encoding="utf-8") as f:
        for step in range(1, 100_001):
            f.write(json.dumps({"step": step, "train_loss": 1 / step}) + "\n")
            if step % 10_000 == 0:
                f.write(json.dumps({"step": step, "eval_loss": 1 / step}) + "\n")
    lines, offset = read_lines(log)
    assert len(lines) == 100_010 and offset == log.stat().st_size
    kept = parse(downsample(lines, 2000))
    assert len(kept) <= 2000 + 10 + 1
    assert sum("eval_loss" in r for r in kept) == 10  # every evaluation stays
    assert kept[-1]["step"] == 100_000 and [r["step"] for r in kept] == sorted(r["step"] for r in kept)


def test_a_partly_written_line_waits_for_the_next_read(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "train_lo', encoding="utf-8")
    records, offset = read_records(log)
    assert records == [{"step": 1}]
    with open(log, "a", encoding="utf-8") as f:
        f.write('ss": 0.5}\n')
    assert read_records(log, offset) == ([{"step": 2, "train_loss": 0.5}], log.stat().st_size)


def test_the_stream_yields_new_log_lines_then_ends(client, runs):
    log = runs / "live" / "train_log.jsonl"
    offset = client.get("/api/run/log", params={"path": "live"}).json()["offset"]
    def write_later() -> None:
        time.sleep(0.8)
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": 4, "train_loss": 0.2}) + "\n")
        time.sleep(0.8)
        (runs / "live" / "metrics.json").write_text("{}", encoding="utf-8")  # the run finishes

    writer = threading.Thread(target=write_later)
    writer.start()
    with client.stream("GET", "/api/run/stream", params={"path": "live", "offset": offset}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = sse(response)
    writer.join()
    assert seen == [("records", [{"step": 4, "train_loss": 0.2}]), ("end", "finished")]


def test_the_report_is_served_sandboxed(client, runs):
    (runs / "done" / "report.html").write_text("<h1>报告</h1>", encoding="utf-8")
    response = client.get("/api/run/report", params={"path": "done"})
    assert response.text == "<h1>报告</h1>" and response.headers["content-security-policy"] == "sandbox"


def test_run_details_and_compare(client):
    detail = client.get("/api/run", params={"path": "中文-run"}).json()
    assert detail["config"]["train"]["lr"] == 2e-3 and detail["metrics"]["accuracy"] == 0.8
    diff = client.get("/api/compare", params=[("path", "done"), ("path", "中文-run")]).json()
    assert diff["config"] == [{"key": "train.lr", "values": [1e-3, 2e-3]}]
    assert {"key": "accuracy", "values": [0.8, 0.8]} in diff["metrics"]


@pytest.mark.parametrize("route, params", [
    ("/api/run", {"path": "../data"}),
    ("/api/run", {"path": "/etc"}),
    ("/api/run/log", {"path": "../../../../etc"}),
    ("/api/run/report", {"path": "done/../../outside"}),
    ("/api/run/stream", {"path": ".."}),
    ("/api/compare", [("path", "done"), ("path", "../x")]),
])
def test_paths_outside_the_runs_folder_are_refused(client, route, params):
    response = client.get(route, params=params)
    assert response.status_code == 403, response.text
    assert "outside" in response.json()["error"]["message"] or "not inside" in response.json()["error"]["message"]


def test_a_symlink_out_of_the_runs_folder_is_refused(client, runs, tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "report.html").write_text("secret", encoding="utf-8")
    (runs / "link").symlink_to(tmp_path / "secret")
    assert client.get("/api/run/report", params={"path": "link"}).status_code == 403


def test_files_outside_the_roots_cannot_be_read_or_written_through_the_form(client, runs):
    for key, value in [("data.train", "../../etc/passwd"), ("data.train", "/etc/passwd"),
                       ("model.tokenizer", "../secret")]:
        body = client.post("/api/preflight", json={"name": "x", "values": {key: value}}).json()["error"]
        assert body["key"] == key and "outside" in body["message"]
    for name in ("../escape", "a/b", "..", "/abs"):
        assert client.post("/api/start", json={"name": name, "values": {}}).json()["error"]["key"] == "name"
    assert client.post("/api/preflight", json={"name": "评论-1", "values": {}}).json()["error"]["key"] == "data.train"
    assert client.post("/api/classify", json={"model": "../../elsewhere", "text": "好"}).status_code == 403
    assert not (runs.parent / "escape").exists()


def test_static_files_only_by_exact_name(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert client.get("/static/js/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../paths.py").status_code == 404
    assert client.get("/static/%2e%2e/paths.py").status_code == 404


def test_a_bad_value_is_refused_naming_its_key(client):
    for values, key in [({"train.lr": "fast"}, "train.lr"), ({"train.nope": "1"}, "train.nope"),
                        ({"output_dir": "/tmp/x"}, "output_dir"), ({"task": "nonsense"}, "task"),
                        ({"method": "lora"}, "method")]:
        response = client.post("/api/preflight", json={"name": "x", "values": values})
        assert response.status_code in (400, 422) and response.json()["error"]["key"] == key, response.text


def test_preflight_reports_data_problems_by_line(client, runs):
    data = runs.parent / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\n好,pos\n,neg\n差,neg\n", encoding="utf-8")
    report = client.post("/api/preflight", json={"name": "new", "values": {"data.train": str(data / "train.csv"),
                                                                            "model.preset": "tiny"}}).json()
    assert report["ok"] is False
    assert any("train.csv:3" in p and "empty" in p for p in report["problems"])
    assert not (runs / "new").exists()


def test_preflight_counts_rows_and_labels(client, runs):
    data = runs.parent / "data"
    data.mkdir()
    rows = "".join(f"评论{i},{'好' if i % 3 else '差'}\n" for i in range(30))
    (data / "train.csv").write_text("text,label\n" + rows, encoding="utf-8")
    report = client.post("/api/preflight", json={"name": "new", "values": {
        "data.train": str(data / "train.csv"), "model.preset": "tiny", "data.validation_fraction": "0.2"}}).json()
    assert report["ok"] and report["problems"] == []
    train, validation = report["splits"]["train"], report["splits"]["validation"]
    assert train["rows"] + validation["rows"] == 30 and sum(train["labels"].values()) == train["rows"]
    assert set(train["labels"]) == {"好", "差"}


def test_an_existing_run_name_is_refused_before_starting(client, runs):
    response = client.post("/api/preflight", json={"name": "done", "values": {}})
    assert response.json()["error"]["key"] == "name", response.text


def test_resume_only_interrupted_runs_whose_data_is_inside_the_roots(client, runs):
    assert client.post("/api/run/resume", params={"path": "done"}).status_code == 409
    assert client.post("/api/run/cancel", params={"path": "done"}).status_code == 400
    (runs / "stopped" / "config.yaml").write_text(yaml.safe_dump({"data": {"train": "/etc/passwd"}}), encoding="utf-8")
    refused = client.post("/api/run/resume", params={"path": "stopped"}).json()["error"]
    assert refused["key"] == "data.train" and "outside" in refused["message"]


def test_api_key(runs):
    with TestClient(create_app(runs, api_key=KEY)) as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": f"Bearer {KEY}"}).json()["total"] == 5
        assert c.get("/api/run/stream", params={"path": "done"}).status_code == 401
        assert c.get("/").status_code == 200 and c.get("/static/js/api.js").status_code == 200  # no data in them


def test_the_command_binds_loopback_by_default():
    import inspect

    from lmforge.commands import ui

    defaults = {k: p.default for k, p in inspect.signature(ui.run).parameters.items()}
    assert defaults["host"] == "127.0.0.1" and defaults["port"] == 7860 and defaults["api_key"] is None


@pytest.mark.slow
def test_start_cancel_and_resume_a_real_run(tiny, tmp_path):
    """A run started through the API is a real `lmforge finetune` process; cancelling it is Ctrl-C,
    which leaves it resumable, and Resume continues it from the checkpoint."""
    runs = tmp_path / "runs"
    values = {"data.train": str(tiny / "train.csv"), "model.preset": "tiny", "model.tokenizer": str(tiny / "tok"),
              "train.epochs": "50", "train.batch_size": "16", "train.precision": "fp32", "train.save_every": "2",
              "train.log_every": "1", "train.patience": "0"}  # a run that outlasts any cancel wait
    with TestClient(create_app(runs, [str(tiny)])) as c:
        assert c.post("/api/start", json={"name": "long", "values": values}).json() == {"path": "long"}
        state = runs / "long" / "checkpoint" / "state.json"
        deadline = time.monotonic() + 180
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert c.get("/api/run", params={"path": "long"}).json()["summary"]["status"] == "running"
        assert c.post("/api/run/cancel", params={"path": "long"}).json()["status"] == "interrupted"
        log = runs / "long" / "train_log.jsonl"
        size = log.stat().st_size
        assert c.post("/api/run/resume", params={"path": "long"}).status_code == 200
        while log.stat().st_size == size and time.monotonic() < deadline + 120:
            time.sleep(0.5)
        detail = c.get("/api/run", params={"path": "long"}).json()
        assert detail["summary"]["status"] == "running" and log.stat().st_size > size, detail["output"]
        assert c.post("/api/run/cancel", params={"path": "long"}).json()["status"] == "interrupted"


def sse(response) -> list[tuple[str, object]]:
    """(event, data) pairs of a server-sent event stream."""
    found, event = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            found.append((event, json.loads(line[6:])))
    return found


@pytest.mark.slow
def test_chat_streams_a_generation_models_answer(bpe, qa_file, tmp_path):  # noqa: F811 - fixtures
    from lmforge.cli import main

    runs = tmp_path / "runs"
    assert main(["finetune", "task=generation", f"data.train={qa_file}", "model.preset=tiny",
                 f"model.tokenizer={bpe}", f"output_dir={runs / 'chat'}", "train.epochs=1", "train.batch_size=8",
                 "train.precision=fp32", "generation.max_new_tokens=8"]) == 0
    with TestClient(create_app(runs)) as c:
        body = {"model": "chat/best", "messages": [{"role": "user", "content": "你好"}]}
        with c.stream("POST", "/api/chat", json=body) as response:
            events = sse(response)
        assert events[-1] == ("end", None) and all(e == "piece" and isinstance(d, str) for e, d in events[:-1])
        refused = c.post("/api/classify", json={"model": "chat/best", "text": "你好"})
        assert refused.status_code == 400 and "classification" in refused.json()["error"]["message"]
        assert c.post("/api/chat", json={"model": "chat/best", "messages": []}).status_code == 422
