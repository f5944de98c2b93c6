"""The remote engine against real servers: retries, stickiness, modes, and what users can get wrong.

The upstream is `s1 serve` on the tiny model (ids mode). Failures come from a real HTTP server on
127.0.0.1 (`Proxy`) that forwards to the upstream, and fails the requests it is told to fail first.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from s1 import BudgetForcing, Sampling, generate
from s1.core.errors import UserError
from s1.core.formats import encode
from s1.engines.base import make_request
from s1.engines.hf import HFEngine
from s1.engines.remote import RemoteEngine, adds_bos, prompt_text
from tests.cli.test_cli import s1
from tests.serve.test_serve import free_port, served

QUESTIONS = ["What is 7*8?", "Name three primes.", "Why is the sea salty?", "Spell 'cat' backwards."]
FORCING = BudgetForcing(max_thinking_tokens=40, num_ignore=2, max_answer_tokens=6)
FAST = dict(backoff=0.01, backoff_cap=2.0)  # retries back off for real, only briefly


class Proxy:
    """A real HTTP server that forwards to `upstream`; /v1/completions first answers the scripted failures."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.failures: list[tuple[int, dict]] = []  # (status, headers) for the next completions, in order
        self.fail_always: int | None = None
        self.lock = threading.Lock()
        self.reset()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                r = httpx.get(f"{proxy.upstream}{self.path}", timeout=60)
                self.reply(r.status_code, r.content)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/v1/completions"):
                    with proxy.lock:
                        proxy.log.append((time.monotonic(), body))
                        fail = proxy.failures.pop(0) if proxy.failures else None
                        if fail is None and proxy.fail_always is not None:
                            fail = (proxy.fail_always, {})
                    if fail is not None:
                        status, headers = fail
                        message = {"error": {"message": f"scripted failure {status}", "code": status}}
                        return self.reply(status, json.dumps(message).encode(), headers)
                r = httpx.post(
                    f"{proxy.upstream}{self.path}",
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=300,
                )
                self.reply(r.status_code, r.content)

            def reply(self, status: int, content: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.log: list[tuple[float, bytes]] = []

    @property
    def completions(self) -> int:
        return len(self.log)

    def prompts(self) -> list[list[int]]:
        return [json.loads(body)["prompt"] for _, body in self.log]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream(tiny_dir):
    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "8") as base:
        yield base


@pytest.fixture
def proxies(upstream):
    made = []

    def make() -> Proxy:
        made.append(Proxy(upstream))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture(scope="module")
def reference(upstream, tiny_dir):
    """QUESTIONS straight from the upstream, no failures: (completions, completions requests made)."""
    proxy = Proxy(upstream)
    try:
        engine = RemoteEngine.load(str(tiny_dir), [proxy.url], mode="ids")
        results = generate(QUESTIONS, engine, FORCING)
        return [r.output_token_ids for r in results], proxy.completions
    finally:
        proxy.close()


def test_503s_are_retried_and_change_nothing(proxies, tiny_dir, reference):
    expected, rounds = reference
    assert rounds >= 2 * len(QUESTIONS), "every sequence should take several rounds"
    flaky = proxies()
    flaky.failures = [(503, {}), (503, {})]  # the auto probe meets them first: retried, not taken for "text only"
    engine = RemoteEngine.load(str(tiny_dir), [flaky.url], mode="auto", **FAST)
    assert engine.backend.modes == {flaky.base: "ids"}
    assert flaky.completions == 3
    flaky.reset()
    flaky.failures = [(503, {}), (503, {})]
    results = generate(QUESTIONS, engine, FORCING)
    assert [r.output_token_ids for r in results] == expected
    assert flaky.completions == rounds + 2
    assert engine.backend.modes == {flaky.base: "ids"}


def test_429_waits_for_retry_after_capped(proxies, tiny_dir, reference):
    expected, rounds = reference
    flaky = proxies()
    engine = RemoteEngine.load(str(tiny_dir), [flaky.url], mode="ids", **FAST)
    # the first call is refused twice: wait 1 s as asked, then 3600 s as asked but capped at 2 s
    flaky.failures = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "3600"})]
    results = generate(QUESTIONS[:1], engine, FORCING)
    assert [r.output_token_ids for r in results] == expected[:1]
    (t0, first), (t1, second), (t2, third) = flaky.log[:3]
    assert first == second == third  # the same request, retried
    assert 0.95 <= t1 - t0 < 1.9
    assert 1.9 <= t2 - t1 < 4.0


def test_failures_that_retrying_cannot_fix(proxies, tiny_dir):
    proxy = proxies()
    engine = RemoteEngine.load(str(tiny_dir), [proxy.url], mode="auto", retries=3, **FAST)
    proxy.reset()
    # a 4xx is the request's fault: no retry, the server's own words
    proxy.failures = [(400, {})]
    with pytest.raises(RuntimeError, match=r"rejected the request with HTTP 400: scripted failure 400"):
        generate(QUESTIONS[0], engine, FORCING)
    assert proxy.completions == 1
    # a server gone for good: every try spent, the error says which server and how
    proxy.close()
    with pytest.raises(RuntimeError, match=rf"every server failed.*{proxy.base} \(connection refused.*4 tries\)"):
        generate(QUESTIONS[0], engine, FORCING)
    assert engine.backend.modes == {proxy.base: "ids"}
    # a model name the server does not serve
    with pytest.raises(UserError, match=r"does not serve model 'nope'; it serves 'tiny'"):
        RemoteEngine.load(str(tiny_dir), [proxy.upstream], upstream_model="nope")


def _question_of(tokenizer, prompt_ids: list[int]) -> str:
    text = tokenizer.decode(prompt_ids)
    [question] = [q for q in QUESTIONS if q in text]
    return question


def test_each_sequence_sticks_to_one_server(proxies, tiny_dir, reference):
    expected, rounds = reference
    a, b = proxies(), proxies()
    engine = RemoteEngine.load(str(tiny_dir), [a.url, b.url], mode="ids", **FAST)
    a.reset()
    b.reset()
    results = generate(QUESTIONS, engine, FORCING)
    assert [r.output_token_ids for r in results] == expected
    seen = {q: set() for q in QUESTIONS}
    for name, proxy in (("a", a), ("b", b)):
        for prompt in proxy.prompts():
            seen[_question_of(engine.tokenizer, prompt)].add(name)
    assert all(len(servers) == 1 for servers in seen.values()), seen
    assert {s for servers in seen.values() for s in servers} == {"a", "b"}
    assert a.completions + b.completions == rounds


def test_a_failing_server_hands_its_sequences_over_for_good(proxies, tiny_dir, reference):
    expected, rounds = reference
    bad, good = proxies(), proxies()
    engine = RemoteEngine.load(str(tiny_dir), [bad.url, good.url], mode="ids", retries=2, **FAST)
    bad.reset()
    good.reset()
    bad.fail_always = 503
    results = generate(QUESTIONS, engine, FORCING)
    assert [r.output_token_ids for r in results] == expected
    # half the sequences started on `bad`, spent their 3 tries there once, and never came back
    assert bad.completions == 3 * len(QUESTIONS) // 2
    assert good.completions == rounds


def test_text_prompts_never_carry_a_second_bos(tiny_dir):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(str(tiny_dir))  # the embedded tokenizer: adds no BOS
    with_bos = AutoTokenizer.from_pretrained(str(tiny_dir), add_bos_token=True)
    assert not adds_bos(plain) and adds_bos(with_bos)
    text = "<|im_start|>user\nWhat is 7*8?<|im_end|>\n<|im_start|>assistant\n<|im_start|>think"
    ids = with_bos(text).input_ids  # what such a model sees: one BOS, then the prompt
    assert ids[0] == with_bos.bos_token_id
    # a text server tokenizes what it gets with its own defaults, BOS included
    assert with_bos(prompt_text(with_bos, ids, adds_bos(with_bos))).input_ids == ids
    assert with_bos(prompt_text(with_bos, ids, False)).input_ids[:2] == [with_bos.bos_token_id] * 2  # the bug
    ids = encode(plain, text)
    assert plain(prompt_text(plain, ids, adds_bos(plain))).input_ids == ids


@pytest.mark.slow
def test_cli_ids_mode_matches_in_process_hf(upstream, tiny, tiny_dir, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    run = s1(
        "generate",
        "--engine",
        "remote",
        "--base-url",
        f"{upstream}/v1",
        "--remote-mode",
        "ids",
        "--model",
        str(tiny_dir),
        "--json",
        "--temperature",
        "0",
        "--input",
        str(questions),
        "--max-thinking-tokens",
        "40",
        "--num-ignore",
        "2",
        "--max-answer-tokens",
        "6",
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    model, tokenizer = tiny
    engine = HFEngine(model, tokenizer)
    requests = [
        make_request(tokenizer, engine.format_tokens, engine.context_length, q, FORCING, Sampling()) for q in QUESTIONS
    ]
    local = engine.generate(requests)
    assert [r["prompt_token_ids"] for r in records] == [r.prompt_token_ids for r in requests]
    assert [r["output_token_ids"] for r in records] == [c.output_token_ids for c in local]
    assert any(c.extensions_used for c in local), "no extension was forced; the case proves little"


def test_cli_remote_errors_are_one_sentence():
    bogus = s1("generate", "--engine", "remote", "--base-url", "http://127.0.0.1:1/v1", "--remote-mode", "bogus", "Hi")
    assert bogus.returncode == 2
    [line] = bogus.stderr.strip().splitlines()
    assert "--remote-mode" in line and "'bogus'" in line
    bogus = s1("eval", "--engine", "remote", "--base-url", "http://127.0.0.1:1/v1", "--remote-mode", "bogus")
    assert bogus.returncode == 2 and "--remote-mode" in bogus.stderr and len(bogus.stderr.strip().splitlines()) == 1
    closed = f"http://127.0.0.1:{free_port()}"
    down = s1("generate", "--engine", "remote", "--base-url", f"{closed}/v1", "Hi")
    assert down.returncode == 1, down.stderr
    [line] = down.stderr.strip().splitlines()
    assert line.startswith("Error: Cannot reach the server at") and closed in line and "Traceback" not in down.stderr
    wrong = s1("generate", "--engine", "hf", "--remote-mode", "ids", "Hi")
    assert wrong.returncode == 1 and "--remote-mode is only for --engine remote" in wrong.stderr


def test_a_search_through_two_servers_keeps_each_tree_on_one_and_grows_the_same_tree(proxies, tiny_dir, tiny):
    from s1.core.sampling import Sampling as S
    from s1.engines.base import make_request
    from s1.engines.hf import HFEngine
    from s1.evaluate.rewards import CallableReward
    from s1.evaluate.search import RebaseSettings, StepRule, rebase

    a, b = proxies(), proxies()
    engine = RemoteEngine.load(str(tiny_dir), [a.url, b.url], mode="ids", **FAST)
    local = HFEngine(*tiny)
    scorer = CallableReward(lambda q, steps: [((len(s) * 37) % 100) / 100 for s in steps])
    settings = RebaseSettings(width=4, step=StepRule(max_tokens=6), max_depth=6)
    forcing = BudgetForcing(max_thinking_tokens=30, min_thinking_tokens=20, max_answer_tokens=4)  # several steps deep
    for question in QUESTIONS[:2]:
        a.reset()
        b.reset()
        request = make_request(engine.tokenizer, engine.format_tokens, engine.context_length, question, forcing, S())
        # greedy children are all alike, which is what makes the two engines' trees comparable token for token
        remote = rebase(engine, request, question, scorer, settings, lambda node, j: S())
        assert (a.completions == 0) != (b.completions == 0), "one search's nodes went to two servers"
        assert remote.root_prefill == 0 and remote.prefill_tokens >= (a.completions + b.completions) * len(
            request.prompt_token_ids
        )
        there = rebase(local, request, question, scorer, settings, lambda node, j: S())
        assert [(n["parent"], n["text"], n["children"], n["finished"]) for n in remote.nodes] == [
            (n["parent"], n["text"], n["children"], n["finished"]) for n in there.nodes
        ]
        assert len(remote.trajectories) == 4 and max(n["depth"] for n in remote.nodes) > 1
