"""`s1 serve` under load: a real server process on 127.0.0.1, concurrent real clients, no mocks."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest

from s1 import BudgetForcing, Sampling
from s1.core.formats import render_messages
from s1.engines.base import prepare
from s1.engines.hf import HFEngine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    log = tempfile.TemporaryFile("w+")  # a pipe nobody reads would block a chatty server
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", "serve", "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in time")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, as a user would; a server still alive 30 s later is killed and the test fails."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the server did not exit within 30 s of SIGTERM") from None


@contextlib.contextmanager
def served(*args: str):
    """`s1 serve ARGS` on a free port for the length of a with-block; yields its base URL."""
    proc, base = start_server(*args)
    try:
        yield base
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def server(tiny_dir):
    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "16") as base:
        yield base


def client_settings(i: int) -> dict:
    return {
        "max_thinking_tokens": 10 + 3 * i,
        "num_ignore": i % 3,
        "min_thinking_tokens": (i % 4) * 2,
        "max_answer_tokens": 3 + i % 5,
        "extensions": ["Wait", "Hmm"] if i % 2 else "Wait",
    }


def reference(engine: HFEngine, question: str, s: dict):
    """What the same model gives for this request alone, in process: the ground truth for 'not mixed'."""
    ext = s["extensions"]
    forcing = BudgetForcing(
        max_thinking_tokens=s["max_thinking_tokens"],
        min_thinking_tokens=s["min_thinking_tokens"],
        num_ignore=s["num_ignore"],
        extensions=tuple([ext] if isinstance(ext, str) else ext),
        max_answer_tokens=s["max_answer_tokens"],
    )
    prompt = render_messages(engine.tokenizer, [{"role": "user", "content": question}], engine.fmt)
    return engine.generate(
        [prepare(engine.tokenizer, engine.format_tokens, engine.context_length, prompt, forcing, Sampling())]
    )[0]


def chat(base: str, question: str, settings: dict, stream: bool) -> dict:
    body = {"model": "tiny", "messages": [{"role": "user", "content": question}], "stream": stream, **settings}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if not stream:
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
        r.raise_for_status()
        data = r.json()
        return {
            "thinking": data["choices"][0]["message"]["reasoning_content"],
            "answer": data["choices"][0]["message"]["content"],
            "usage": data["usage"],
            "s1": data["s1"],
        }
    thinking, answer, chunks = "", "", []
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunks.append(json.loads(line[6:]))
    *choice_chunks, usage_chunk = chunks
    # OpenAI's include_usage: usage is null on every chunk but a last one whose choices are empty
    assert usage_chunk["choices"] == [] and all(c["usage"] is None for c in choice_chunks)
    for chunk in choice_chunks:
        delta = chunk["choices"][0]["delta"]
        thinking += delta.get("reasoning_content", "")
        answer += delta.get("content") or ""
    return {"thinking": thinking, "answer": answer, "usage": usage_chunk["usage"], "s1": choice_chunks[-1]["s1"]}


def test_32_concurrent_clients_each_get_their_own_settings(server, tiny):
    engine = HFEngine(*tiny)
    questions = [f"Client {i}: what is {i} plus {i}?" for i in range(32)]
    results: dict[int, dict] = {}
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            results[i] = chat(server, questions[i], client_settings(i), stream=i % 2 == 0)
        except Exception as exc:  # collected and reported below
            errors.append(f"client {i}: {exc!r}")

    def disconnecter(i: int) -> None:
        """Starts a long stream, reads a few chunks and hangs up."""
        body = {
            "messages": [{"role": "user", "content": f"long {i}"}],
            "stream": True,
            "max_thinking_tokens": 400,
            "min_thinking_tokens": 400,
            "max_tokens": 50,
        }
        with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=300) as r:
            for n, _ in enumerate(r.iter_lines()):
                if n > 6:
                    break

    threads = [threading.Thread(target=disconnecter, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert sorted(results) == list(range(32)), "a request was lost"
    for i, got in results.items():
        s = client_settings(i)
        want = reference(engine, questions[i], s)
        assert got["s1"]["thinking_tokens"] == want.thinking_tokens <= s["max_thinking_tokens"]
        assert got["usage"]["completion_tokens_details"]["reasoning_tokens"] == want.thinking_tokens
        assert (got["thinking"], got["answer"]) == (want.thinking, want.answer), f"client {i} got another's text"
        assert got["s1"]["answer_tokens"] <= s["max_answer_tokens"]
        if not got["s1"]["capped"]:
            assert got["s1"]["thinking_tokens"] >= s["min_thinking_tokens"]


@pytest.mark.parametrize(
    "body, words",
    [
        (
            '{"messages": [{"role": "user", "content": "hi"}], "max_thinking_tokens": -1}',
            "max_thinking_tokens: Input should be greater than or equal to 0",
        ),
        (
            '{"messages": [{"role": "user", "content": "hi"}], "max_thinking_tokens": 4, "min_thinking_tokens": 9}',
            "larger than",
        ),
        ('{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}', "is not served here"),
        ('{"messages": [{"role": "user", "content": "hi"}', "not valid JSON"),
        ('{"messages": []}', "messages"),
        ('{"messages": [{"role": "user", "content": "hi"}], "max_thinking_tokens": "lots"}', "max_thinking_tokens"),
    ],
)
def test_bad_requests_get_400_and_the_server_keeps_serving(server, body, words):
    r = httpx.post(
        f"{server}/v1/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert r.status_code == 400
    assert words in r.json()["error"]["message"]
    ok = httpx.post(
        f"{server}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_thinking_tokens": 4, "max_tokens": 2},
        timeout=60,
    )
    assert ok.status_code == 200


def test_openai_client_passes_budget_fields(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["tiny"]
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "What is 7*8?"}],
        max_tokens=5,
        extra_body={"max_thinking_tokens": 12, "num_ignore": 1},
    )
    assert reply.usage.completion_tokens_details.reasoning_tokens <= 12
    assert reply.choices[0].message.reasoning_content is not None
    completion = client.completions.create(
        model="tiny",
        prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        max_tokens=3,
        extra_body={"max_thinking_tokens": 6},
    )
    assert completion.usage.completion_tokens_details.reasoning_tokens <= 6
    assert completion.choices[0].text and completion.choices[0].finish_reason in ("stop", "length")


def test_openapi_documents_each_generating_route_with_its_body(server):
    """The routes read their own bodies (off the event loop), so FastAPI would document them as taking none;
    /openapi.json names each body and every schema it refers to resolves in the document."""
    doc = httpx.get(f"{server}/openapi.json", timeout=60).json()
    schemas = doc["components"]["schemas"]
    for route, fields in {
        "/v1/chat/completions": {"messages", "max_thinking_tokens", "temperature"},
        "/v1/completions": {"prompt", "max_tokens"},
        "/v1/responses": {"input"},
        "/tokenize": {"prompt", "messages"},
    }.items():
        ref = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert fields <= set(schemas[ref.rsplit("/", 1)[1]]["properties"]), route
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            refs.update([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs and all(r.rsplit("/", 1)[1] in schemas for r in refs), "a $ref points nowhere"
