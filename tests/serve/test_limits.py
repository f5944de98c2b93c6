"""What one client may take from a shared server (serve/limits.py, serve/bodies.py, the schedulers' turns): a real
`s1 serve` on 127.0.0.1, real clients and raw sockets for the half-sent bodies and idle connections. Behaviour is
asserted (statuses, what was admitted when, what /metrics counts), waiting on events, never on how long things take."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.serve.test_serve import free_port, stop_server

TIGHT = (
    "--max-request-body-bytes",
    "200000",
    "--request-read-timeout",
    "2",
    "--max-sequences-per-request",
    "8",
    "--limit-concurrency",
    "6",
    "--timeout-keep-alive",
    "1",
)


@contextlib.contextmanager
def served_logged(log_path, *args: str):
    """`s1 serve ARGS` on a free port, its output in `log_path`; yields (base URL, process)."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", "serve", "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"server exited: {open(log_path).read()[-3000:]}"
            assert time.time() < deadline, "server did not start in time"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, proc
    finally:
        stop_server(proc)
        log.close()


@pytest.fixture(scope="module")
def tight(tiny_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with served_logged(log, "--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "2", *TIGHT) as (
        base,
        _,
    ):
        yield base, log


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["type"] and error["message"].endswith("."), error
    return error


def _raw(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=60)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


# ----------------------------------------------------------------------------------------------- the options
def test_limits_are_s1_serve_options_and_a_bad_one_is_one_sentence():
    from tests.cli.test_cli import one_error_line, s1

    line = one_error_line(s1("serve", "--limit-concurrency", "0"))
    assert "--limit-concurrency" in line and "at least 1" in line
    line = one_error_line(s1("serve", "--request-read-timeout", "-1"))
    assert "--request-read-timeout" in line


# ---------------------------------------------------------------------------------------------- the body
def test_a_body_past_the_limit_is_413_before_it_is_read_or_parsed(tight):
    base, _ = tight
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 300_000}]})
    error = _error(httpx.post(f"{base}/v1/chat/completions", content=big, timeout=60), 413)
    assert "200000 bytes" in error["message"] and "--max-request-body-bytes" in error["message"]

    def chunks():  # no Content-Length: the limit is found while reading
        for _ in range(40):
            yield b"x" * 10_000

    _error(httpx.post(f"{base}/v1/completions", content=chunks(), timeout=60), 413)
    assert httpx.get(f"{base}/health", timeout=60).status_code == 200


def test_a_half_sent_head_or_body_gets_408_and_its_connection_is_closed(tight):
    base, _ = tight
    with _raw(base) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # half a head
        assert _read_all(s).startswith(b"HTTP/1.1 408")
    with _raw(base) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"messages": ['
        )
        reply = _read_all(s)  # returns once the server closes: the timeout is what ends it
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:300]
    assert "--request-read-timeout" in json.loads(body)["error"]["message"]


def test_idle_connections_are_closed_and_open_ones_are_bounded(tight):
    """--timeout-keep-alive closes an idle connection; with --limit-concurrency (6) connections open, the new one
    counted, a request gets 503, and once they close the server answers again."""
    base, _ = tight
    with _raw(base) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 200")  # ends because the server closed the idle connection
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "long"}],
            "stream": True,
            "max_thinking_tokens": 600,
            "min_thinking_tokens": 600,
            "max_tokens": 640,
        }
    ).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    held = [_raw(base) for _ in range(5)]  # uvicorn counts the new connection too: five and it makes six
    try:
        for s in held:  # five streams in flight (two decoding, three waiting): five open connections
            s.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.time() + 60
        while httpx.get(f"{base}/health", timeout=60).status_code != 503:  # once the server has seen all five
            assert time.time() < deadline, "past --limit-concurrency the server still took requests"
            time.sleep(0.05)
    finally:
        for s in held:
            s.close()
    deadline = time.time() + 60
    while httpx.get(f"{base}/health", timeout=60).status_code != 200:
        assert time.time() < deadline, "the server kept refusing after the connections closed"
        time.sleep(0.05)
    _settle(base)


def _settle(base: str) -> None:
    """Wait until no sequence runs or waits (cancelled streams of an earlier test have left the batch)."""
    deadline = time.time() + 120
    while _metric(base, "num_requests_running") + _metric(base, "num_requests_waiting") > 0:
        assert time.time() < deadline, "sequences of hung-up clients kept running"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------- sequences per request
def test_sequences_per_request_are_bounded_with_a_400_naming_n_or_prompt(tight):
    base, _ = tight
    body = {"prompt": ["a", "b", "c"], "n": 3, "max_tokens": 2}
    error = _error(httpx.post(f"{base}/v1/completions", json=body, timeout=60), 400)
    assert error["param"] == "prompt" and "3 prompts x n=3 = 9" in error["message"]
    assert "--max-sequences-per-request" in error["message"]
    chat = {"messages": [{"role": "user", "content": "hi"}], "n": 9, "max_tokens": 2}
    error = _error(httpx.post(f"{base}/v1/chat/completions", json=chat, timeout=60), 400)
    assert error["param"] == "n" and "n=9" in error["message"]
    ok = httpx.post(f"{base}/v1/completions", json={**body, "n": 2, "max_tokens": 1}, timeout=120)
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 6


# ------------------------------------------------------------------------------------ text and Content-Type
@pytest.mark.parametrize(
    "path, body, where",
    [
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages[0].content"),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
            "messages[0].content[0].text",
        ),
        ("/v1/completions", '{"prompt": ["ok", "\\ud800"], "max_tokens": 2}', "prompt[1]"),
        (
            "/v1/chat/completions",
            '{"messages": [], "chat_template_kwargs": {"x": {"\\ud800": 1}}}',
            "chat_template_kwargs.x",
        ),
        ("/v1/responses", '{"input": "\\ud83d"}', "input"),
        ("/tokenize", '{"prompt": "\\ud800"}', "prompt"),
    ],
)
def test_text_that_is_not_unicode_is_a_400_naming_its_field(tight, path, body, where):
    base, log = tight
    r = httpx.post(f"{base}{path}", content=body, headers={"content-type": "application/json"}, timeout=60)
    error = _error(r, 400)
    assert error["param"].startswith(where) and "not valid Unicode" in error["message"], error
    assert "Traceback" not in log.read_text()


def test_a_body_sent_form_encoded_is_a_400_that_names_the_content_type(tight):
    base, _ = tight
    body = '{"messages": [{"role": "user", "content": "hi"}]}'
    r = httpx.post(
        f"{base}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert "Content-Type" in _error(r, 400)["message"]
    bad = httpx.post(
        f"{base}/v1/completions", content=b"\xff\xfe{", headers={"content-type": "application/json"}, timeout=60
    )
    assert "UTF-8" in _error(bad, 400)["message"]


# ------------------------------------------------------------------------------------------------- /metrics
def _metric(base: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{base}/metrics", timeout=60).text
    pattern = rf"^s1:{re.escape(name)}{re.escape(labels)} (\S+)$"
    values = [float(m) for m in re.findall(pattern, text, re.M)]
    return sum(values)


def test_a_client_that_hangs_up_is_counted_and_logged_in_one_line(tight):
    """A non-streaming client disconnects while its request decodes: its slot is freed, its latency and the tokens
    it got are counted, and the log has one line for it (status 499), no CancelledError traceback."""
    base, log = tight
    _settle(base)
    logged = len(log.read_text())  # this test's lines come after
    before = _metric(base, "e2e_request_latency_seconds_count")
    tokens_before = _metric(base, "generation_tokens_total")
    first_tokens = _metric(base, "time_to_first_token_seconds_count")
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "long"}],
            "max_thinking_tokens": 600,
            "min_thinking_tokens": 600,
            "max_tokens": 640,
        }
    ).encode()
    with _raw(base) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.time() + 120
        while _metric(base, "time_to_first_token_seconds_count") == first_tokens:  # it is generating
            assert time.time() < deadline, "the request never started decoding"
            time.sleep(0.05)
    deadline = time.time() + 120
    while _metric(base, "e2e_request_latency_seconds_count") == before:
        assert time.time() < deadline, "the hung-up request was never recorded"
        time.sleep(0.05)
    assert _metric(base, "num_requests_running") == 0
    assert _metric(base, "requests_total", '{status="499"}') >= 1
    assert _metric(base, "generation_tokens_total") > tokens_before
    text = log.read_text()[logged:]
    assert "CancelledError" not in text and "Traceback" not in text, text[-3000:]
    assert len(re.findall(r"status=499", text)) == 1, text[-2000:]
    assert re.search(r"chat /v1/chat/completions .*status=499", text), text[-2000:]


def test_an_exception_no_handler_takes_is_counted_as_the_500_it_becomes():
    """StatusCounter sees a 500 that Starlette sends outside it (an unhandled exception) in requests_total."""
    import asyncio

    from fastapi import FastAPI

    from s1.serve.metrics import Metrics, StatusCounter

    class Idle:
        load = (0, 0)

    app = FastAPI()
    metrics = Metrics(Idle())

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    app.add_middleware(StatusCounter, metrics=metrics)

    async def call():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/boom")

    assert asyncio.run(call()).status_code == 500
    assert b's1:requests_total{status="500"} 1.0' in metrics.text()


# ------------------------------------------------------------------------------------------- fair admission
@pytest.mark.parametrize("kind", ["batch", "serial"])
def test_a_small_request_joins_before_a_big_one_admitted_all_its_sequences(tiny, kind):
    """Two slots (one worker for the scheduler of remote engines); a request of 12 sequences, then one of 1: the small
    one is admitted at the next free slot (its events come while most of the big one's sequences have not started),
    not after all twelve were."""
    from s1 import BudgetForcing, Sampling
    from s1.engines.base import prepare
    from s1.engines.hf import HFEngine
    from s1.serve.schedulers import BatchScheduler, Delta, Done, SerialScheduler

    engine = HFEngine(*tiny)
    forcing = BudgetForcing(max_thinking_tokens=6, max_answer_tokens=2)
    request = prepare(engine.tokenizer, engine.format_tokens, engine.context_length, "Q: 1+1?", forcing, Sampling())
    scheduler = BatchScheduler(engine, max_batch=2) if kind == "batch" else SerialScheduler(engine, workers=1)
    order: list[tuple[str, int, str]] = []  # (group, rid, event), as the decode thread delivers them
    lock, small_done = threading.Lock(), threading.Event()

    def sink(group, i):
        def put(event):
            with lock:
                order.append((group, i, type(event).__name__))
            if group == "small" and isinstance(event, Done):
                small_done.set()

        return put

    try:
        big = [scheduler.submit(request, sink("big", i), group="big") for i in range(12)]
        scheduler.submit(request, sink("small", 0), group="small")
        assert small_done.wait(timeout=600), "the small request never finished"
        with lock:
            seen = list(order)
        started = {i for g, i, e in seen if g == "big" and e == Delta.__name__}
        assert len(started) <= 4, f"{len(started)} of the big request's sequences started before the small one ended"
        for rid in big:
            scheduler.cancel(rid)
    finally:
        scheduler.close()


# ------------------------------------------------------------------------------------------ the abuse test
def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024


@pytest.mark.slow
def test_the_server_holds_under_a_bounded_abuse_test(tiny_dir, tmp_path):
    """A large body, a slow body, a 4,096-sequence request, 7 MB of text to template and a lone surrogate, sent while
    8 normal requests run:
    all 8 are answered, each abuse gets its one-sentence refusal, /health answers throughout, memory returns."""
    args = ("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "4", "--request-read-timeout", "3")
    with served_logged(tmp_path / "server.log", *args) as (base, proc):
        normal = {
            "messages": [{"role": "user", "content": "What is 2+2?"}],
            "max_thinking_tokens": 24,
            "max_tokens": 32,
        }
        assert httpx.post(f"{base}/v1/chat/completions", json=normal, timeout=300).status_code == 200  # warm
        rss_before = _rss(proc.pid)
        statuses: dict[str, int] = {}
        health: list[float] = []
        done = threading.Event()

        def poll_health():
            while not done.is_set():
                began = time.monotonic()
                assert httpx.get(f"{base}/health", timeout=60).status_code == 200
                health.append(time.monotonic() - began)

        def normal_request(i: int):
            r = httpx.post(f"{base}/v1/chat/completions", json=normal, timeout=600)
            statuses[f"normal{i}"] = r.status_code

        def large():
            body = b'{"messages": [{"role": "user", "content": "' + b"x" * (9 << 20) + b'"}]}'
            statuses["large"] = httpx.post(f"{base}/v1/chat/completions", content=body, timeout=300).status_code

        def slow():
            with _raw(base) as s:
                s.settimeout(300)
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
                statuses["slow"] = int(_read_all(s).split(b" ", 2)[1])

        def many():
            body = {"prompt": [f"p{i}" for i in range(256)], "n": 16, "max_tokens": 2}
            statuses["many"] = httpx.post(f"{base}/v1/completions", json=body, timeout=300).status_code

        def heavy():  # under the body limit, far over what the context holds: refused before it is tokenized
            body = {"messages": [{"role": "user", "content": "hello world " * 600_000}]}
            r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
            statuses["heavy"] = r.status_code
            assert "context" in r.json()["error"]["message"]

        def surrogate():
            body = '{"messages": [{"role": "user", "content": "\\ud800"}]}'
            r = httpx.post(
                f"{base}/v1/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=300
            )
            statuses["surrogate"] = r.status_code

        poller = threading.Thread(target=poll_health)
        poller.start()
        work = [threading.Thread(target=normal_request, args=(i,)) for i in range(8)]
        work += [threading.Thread(target=f) for f in (large, slow, many, heavy, surrogate)]
        try:
            for t in work:
                t.start()
            for t in work:
                t.join(timeout=900)
        finally:
            done.set()
            poller.join(timeout=120)
        assert statuses == {
            **{f"normal{i}": 200 for i in range(8)},
            "large": 413,
            "slow": 408,
            "many": 400,
            "heavy": 400,
            "surrogate": 400,
        }
        assert health and max(health) < 10, f"/health took up to {max(health):.1f} s ({len(health)} answers)"
        assert _rss(proc.pid) < 1.2 * rss_before + (64 << 20), (rss_before, _rss(proc.pid))
        assert "Traceback" not in (tmp_path / "server.log").read_text()
