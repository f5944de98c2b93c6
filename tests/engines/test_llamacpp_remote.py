"""llama.cpp in process, a real llama.cpp server, the remote engine against it, and the proxy mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from s1 import S1, BudgetForcing, generate
from s1.core.errors import UserError
from s1.core.models import embedded_gguf
from s1.engines.llamacpp import LlamaCppEngine
from s1.engines.remote import RemoteEngine
from tests.engines.test_remote import Proxy
from tests.serve.test_serve import free_port, served, stop_server

QUESTIONS = ["What is 7*8?", "Name three primes.", "Why is the sea salty?"]
# llama-cpp-python's server takes text only, so each round is re-tokenized on the server, as in s1's
# original script. Equality with the in-process engine (token ids throughout) is exact when that text
# round-trips to the same tokens. With the s1 format the embedded model writes "er" right after
# "<|im_start|>think", which the server re-reads as one token "thinker": a round after that sees other
# ids. So the multi-round cases use the s1 format with its newline written into the prompt.
S1_NEWLINE = replace(S1, name="s1-newline", think_start="<|im_start|>think\n")
SETTINGS = {
    "cap only": (S1, BudgetForcing(max_thinking_tokens=24, max_answer_tokens=12)),
    "num_ignore 2": (S1_NEWLINE, BudgetForcing(max_thinking_tokens=64, num_ignore=2, max_answer_tokens=12)),
    "min thinking": (S1_NEWLINE, BudgetForcing(max_thinking_tokens=40, min_thinking_tokens=30, max_answer_tokens=12)),
}


@pytest.fixture(scope="module")
def llamacpp():
    return LlamaCppEngine.load("smollm2", parallel=4, ctx_size=4 * 4096, threads=2)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's own OpenAI-compatible server on the embedded GGUF, with flash attention as the
    in-process engine uses it (llama.cpp's default), so both compute the same logits."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(embedded_gguf()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
            "--flash_attn",
            "true",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(log.read()[-3000:])
        try:
            if httpx.get(f"{base}/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("the llama.cpp server did not start in 120 s")
    yield base
    stop_server(proc)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_remote_engine_matches_in_process_llamacpp(llamacpp, llama_server, name):
    fmt, forcing = SETTINGS[name]
    local = generate(QUESTIONS, LlamaCppEngine(llamacpp.runtime, llamacpp.tokenizer, fmt), forcing)
    remote = generate(QUESTIONS, RemoteEngine.load("smollm2", [llama_server], fmt), forcing)
    if name != "cap only":
        assert any(r.extensions_used for r in local), "no extension was forced; the case proves nothing"
    for a, b in zip(local, remote):
        assert a.thinking_tokens <= forcing.max_thinking_tokens
        assert (a.thinking, a.answer) == (b.thinking, b.answer)
        assert (a.thinking_tokens, a.extensions_used, a.capped) == (b.thinking_tokens, b.extensions_used, b.capped)


def test_llamacpp_engine_applies_the_same_semantics(llamacpp):
    [c] = generate("What is 7*8?", llamacpp, BudgetForcing(max_thinking_tokens=20, num_ignore=5))
    assert c.thinking_tokens == 20 and c.capped and c.extensions_used >= 1
    assert c.answer.startswith("Final Answer:")


def test_servers_down_at_load_are_named_and_failing_ones_hand_over(llama_server):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=f"Cannot reach the server at {dead}"):
        RemoteEngine.load("smollm2", [dead, llama_server])
    flaky = Proxy(llama_server)
    try:
        engine = RemoteEngine.load("smollm2", [flaky.url, llama_server], retries=1, backoff=0.01)
        assert engine.backend.modes == {flaky.base: "text", llama_server: "text"}  # llama.cpp takes no token ids
        flaky.reset()
        flaky.fail_always = 503
        results = generate(QUESTIONS * 2, engine, SETTINGS["cap only"][1])
        assert len(results) == 6 and all(r.thinking_tokens <= 24 for r in results)
        assert flaky.completions == 3 * 2  # the three sequences placed there tried twice each, then moved for good
        assert engine.backend.modes == {flaky.base: "text", llama_server: "text"}
    finally:
        flaky.close()


def test_serve_as_a_budget_forcing_proxy(llama_server):
    with served("--model", "smollm2", "--upstream", llama_server) as base:
        body = {
            "messages": [{"role": "user", "content": "What is 7*8?"}],
            "max_thinking_tokens": 20,
            "num_ignore": 5,
            "max_answer_tokens": 12,
        }
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["s1"]["thinking_tokens"] == 20 and data["s1"]["capped"]
        assert data["choices"][0]["message"]["content"].startswith("Final Answer:")
        bad = httpx.post(f"{base}/v1/chat/completions", json={**body, "min_thinking_tokens": 50}, timeout=60)
        assert bad.status_code == 400
        # streamed through the proxy, thinking arrives round by round and adds up to the whole
        reasoning, content, chunks = "", "", 0
        with httpx.stream("POST", f"{base}/v1/chat/completions", json={**body, "stream": True}, timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    chunks += "reasoning_content" in delta
                    reasoning += delta.get("reasoning_content", "")
                    content += delta.get("content") or ""
        message = data["choices"][0]["message"]
        assert (reasoning, content) == (message["reasoning_content"], message["content"])
        assert chunks >= 2
