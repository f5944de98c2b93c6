"""`s1 serve` speaks the OpenAI API as vLLM serves it: a real server process, real clients, no mocks.

Plain completions are continuations (what lm-eval and s1's own remote engine need); hostile requests
get a 400 naming the problem and never harm the requests in flight beside them.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from s1 import BudgetForcing, Sampling
from s1.core.formats import encode, render_messages
from s1.engines.base import prepare, prepare_ids
from s1.engines.hf import HFEngine
from tests.serve.test_serve import served

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@pytest.fixture(scope="module")
def server(tiny_dir):
    with served(
        "--model",
        str(tiny_dir),
        "--served-model-name",
        "tiny",
        "--batch-size",
        "16",
        "--reasoning-effort-caps",
        "low=4,medium=8,high=16",
        "--num-ignore",
        "1",
    ) as base:
        yield base


@pytest.fixture(scope="module")
def engine(tiny):
    return HFEngine(*tiny)


def post(base: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, timeout=120)


def plain_reference(engine: HFEngine, ids: list[int], max_tokens: int) -> list[int]:
    """The same continuation in process: greedy, no thinking, stopping at EOS."""
    forcing = BudgetForcing(max_answer_tokens=max_tokens, max_tokens=max_tokens)
    request = prepare_ids(engine.format_tokens, engine.context_length, "", ids, forcing, Sampling(), plain=True)
    return engine.generate([request])[0].output_token_ids


def test_plain_completion_accepts_every_prompt_form_and_returns_token_ids(server, engine):
    tok = engine.tokenizer
    texts = ["The capital of France is", "One two three"]
    ids = [encode(tok, t) for t in texts]
    want = [plain_reference(engine, i, 6) for i in ids]
    for prompt in (texts[0], ids[0]):
        r = post(server, COMPLETIONS, {"model": "tiny", "prompt": prompt, "max_tokens": 6, "return_token_ids": True})
        assert r.status_code == 200, r.text
        [choice] = r.json()["choices"]
        assert choice["token_ids"] == want[0] and choice["prompt_token_ids"] == ids[0]
        assert "reasoning_content" not in choice, "a plain continuation must not open thinking"
    for prompt in (texts, ids):
        r = post(server, COMPLETIONS, {"prompt": prompt, "max_tokens": 6, "return_token_ids": True, "n": 2})
        choices = r.json()["choices"]
        assert [c["index"] for c in choices] == [0, 1, 2, 3]
        assert [c["token_ids"] for c in choices] == [want[0], want[0], want[1], want[1]]
        assert r.json()["usage"]["completion_tokens"] == sum(len(c["token_ids"]) for c in choices)


def test_stop_strings_and_stop_token_ids_end_the_text(server, engine):
    ids = encode(engine.tokenizer, "Once upon a time")
    full = plain_reference(engine, ids, 12)
    text = engine.tokenizer.decode(full)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), "pick a stop string that occurs in the reference text"
    r = post(server, COMPLETIONS, {"prompt": ids, "max_tokens": 12, "stop": [stop]}).json()["choices"][0]
    assert r["text"] == text[: text.index(stop)] and r["finish_reason"] == "stop" and r["stop_reason"] == stop
    r = post(
        server, COMPLETIONS, {"prompt": ids, "max_tokens": 12, "stop": stop, "include_stop_str_in_output": True}
    ).json()
    assert r["choices"][0]["text"] == text[: text.index(stop) + len(stop)]
    r = post(
        server, COMPLETIONS, {"prompt": ids, "max_tokens": 12, "stop_token_ids": [full[3]], "return_token_ids": True}
    ).json()
    assert r["choices"][0]["token_ids"] == full[: full.index(full[3]) + 1]
    assert r["choices"][0]["stop_reason"] == full[3]


def test_echo_with_logprobs_scores_the_prompt_as_lm_eval_needs(server, engine):
    import torch

    model, tok = engine.model, engine.tokenizer
    ids = encode(tok, "Paris is the capital of France")
    r = post(server, COMPLETIONS, {"prompt": [ids], "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0})
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1 and lp["token_logprobs"][0] is None
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    expected = [float(want[i - 1, ids[i]]) for i in range(1, len(ids))]
    assert lp["token_logprobs"][1 : len(ids)] == pytest.approx(expected, abs=1e-3)
    assert all(len(top) == 1 for top in lp["top_logprobs"][1:])
    scored = post(server, COMPLETIONS, {"prompt": ids, "max_tokens": 0, "logprobs": 0, "echo": True}).json()["choices"][
        0
    ]
    assert scored["text"] == tok.decode(ids, skip_special_tokens=False) and len(scored["logprobs"]["tokens"]) == len(
        ids
    )


def test_max_tokens_bounds_thinking_and_answer_together(server):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "max_thinking_tokens": 50}
    r = post(server, CHAT, body).json()
    assert r["usage"]["completion_tokens"] == 5 and r["choices"][0]["finish_reason"] == "length"
    r = post(
        server,
        CHAT,
        {"messages": [{"role": "user", "content": "Hi"}], "max_thinking_tokens": 0, "max_answer_tokens": 4},
    ).json()
    assert r["s1"]["thinking_tokens"] == 0 and r["choices"][0]["message"]["content"].startswith("Final Answer:")
    r = post(
        server,
        CHAT,
        {"messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": "low", "max_answer_tokens": 2},
    ).json()
    assert r["s1"]["thinking_tokens"] <= 4


def test_a_request_s_thinking_grace_is_honoured_as_in_process(server, engine):
    """`thinking_grace_tokens` is a request field like the other forcing settings: the server's reply is the
    in-process one, thinking past the cap by at most the grace."""
    question = "Count to ten"
    prompt = render_messages(engine.tokenizer, [{"role": "user", "content": question}], engine.fmt)
    for cap, grace in ((6, 0), (6, 9)):
        body = {"max_thinking_tokens": cap, "thinking_grace_tokens": grace, "max_answer_tokens": 2, "num_ignore": 3}
        got = post(server, CHAT, {"messages": [{"role": "user", "content": question}], **body}).json()
        forcing = BudgetForcing(**body)
        [want] = engine.generate(
            [prepare(engine.tokenizer, engine.format_tokens, engine.context_length, prompt, forcing, Sampling())]
        )
        assert got["choices"][0]["message"]["reasoning_content"] == want.thinking
        assert got["s1"]["thinking_tokens"] == want.thinking_tokens <= cap + grace
        assert want.capped and (want.thinking_tokens == cap) == (grace == 0)


def test_server_defaults_apply_to_requests_that_carry_none(server, engine):
    """The server runs with --num-ignore 1: a request without num_ignore gets it, one with 0 does not."""
    body = {
        "messages": [{"role": "user", "content": "Count to ten"}],
        "max_thinking_tokens": 200,
        "max_answer_tokens": 2,
    }
    default = post(server, CHAT, body).json()["s1"]
    assert default["extensions_used"] == 1 or default["capped"]
    none = post(server, CHAT, {**body, "num_ignore": 0}).json()["s1"]
    assert none["extensions_used"] == 0


def test_chat_content_parts_developer_role_and_include_usage(server):
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]},
        ],
        "max_tokens": 6,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 2,
    }
    chunks = []
    with httpx.stream("POST", f"{server}{CHAT}", json=body, timeout=60) as r:
        assert r.status_code == 200
        chunks = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert chunks[-1] == "[DONE]"
    import json

    data = [json.loads(c) for c in chunks[:-1]]
    assert data[-1]["choices"] == [] and data[-1]["usage"]["completion_tokens"] == 12
    assert {c["choices"][0]["index"] for c in data[:-1]} == {0, 1}


@pytest.mark.parametrize(
    "path, body, words",
    [
        (COMPLETIONS, {"prompt": [-1]}, "outside this model's vocabulary"),
        (COMPLETIONS, {"prompt": [10**9]}, "outside this model's vocabulary"),
        (COMPLETIONS, {"prompt": []}, "prompt is empty"),
        (COMPLETIONS, {"prompt": "x", "seed": 2**64}, "seed"),
        (COMPLETIONS, {"prompt": "x", "top_k": -2}, "top_k"),
        (COMPLETIONS, {"prompt": "x", "top_k": 2.5}, "top_k"),
        (COMPLETIONS, {"prompt": "x", "frequency_penalty": 3}, "frequency_penalty"),
        (COMPLETIONS, {"prompt": "x", "presence_penalty": -2.5}, "presence_penalty"),
        (COMPLETIONS, {"prompt": "x", "repetition_penalty": 0}, "repetition_penalty"),
        (COMPLETIONS, {"prompt": "x", "min_p": "lots"}, "min_p"),
        (COMPLETIONS, {"prompt": "x", "max_tokens": 0}, "0 only with echo"),
        (COMPLETIONS, {"prompt": "x", "suffix": "y"}, "suffix"),
        (COMPLETIONS, {"prompt": "x", "logprobs": 99}, "logprobs"),
        (COMPLETIONS, {"prompt": "x", "stream": True, "logprobs": 1}, "without streaming"),
        (COMPLETIONS, {"prompt": "x", "budget_forcing": False, "num_ignore": 2}, "cannot be combined"),
        (COMPLETIONS, {"prompt": "x", "stop_token_ids": [-5]}, "stop_token_ids"),
        (COMPLETIONS, {"prompt": "x", "guided_json": {}}, "guided_json={} is not supported"),
        (
            CHAT,
            {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "xml"}},
            "response_format",
        ),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"}, "reasoning_effort"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
        (
            CHAT,
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages",
        ),
        (
            CHAT,
            {"messages": [{"role": "user", "content": "hi"}], "extensions": ["<|im_end|>"], "num_ignore": 1},
            "ends thinking",
        ),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "extensions": [" "], "num_ignore": 1}, "hi"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "min_thinking_tokens": 100000}, "cannot fit"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "thinking_grace_tokens": -1}, "thinking_grace_tokens"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "thinking_grace_tokens": "a few"}, "thinking_grace"),
        (
            CHAT,
            {
                "messages": [{"role": "user", "content": "hi"}],
                "max_thinking_tokens": 40,
                "thinking_grace_tokens": 10**6,
            },
            "of grace",
        ),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "at least 1"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "n": 1000}, "n"),
    ],
)
def test_hostile_fields_get_one_sentence_400(server, path, body, words):
    r = post(server, path, body)
    if words == "hi":  # a lone space is a real token for this tokenizer: a valid, if odd, extension
        assert r.status_code == 200
        return
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert words in message and "Traceback" not in message


def test_poisonous_requests_fail_alone_while_eight_complete(server, engine):
    """8 normal requests in flight; poisonous ones beside them get 4xx; the 8 match in-process results."""
    questions = [f"Question {i}: what is {i} times {i}?" for i in range(8)]
    settings = {"max_thinking_tokens": 40, "num_ignore": 1, "max_answer_tokens": 6, "temperature": 0}
    results, statuses, errors = {}, [], []

    def normal(i):
        try:
            r = post(server, CHAT, {"messages": [{"role": "user", "content": questions[i]}], **settings})
            results[i] = r.json()["choices"][0]["message"] if r.status_code == 200 else r.text
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    poison = [
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "seed": 2**63, "temperature": 1.0}),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "temperature": 1e-45, "max_tokens": 4}),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "top_p": 1e-50, "temperature": 1.0, "max_tokens": 4}),
        (COMPLETIONS, {"prompt": [5, -1, 7]}),
        (COMPLETIONS, {"prompt": [[1, 2], [49152]]}),
        (COMPLETIONS, {"prompt": "x", "seed": -1}),
    ]

    def poisonous(path, body):
        statuses.append(post(server, path, body).status_code)

    threads = [threading.Thread(target=normal, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=poisonous, args=p) for p in poison * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    # a tiny temperature decodes greedily and a tiny top_p keeps the top token, as in vLLM: both are valid
    assert sorted(statuses) == sorted([400, 200, 200, 400, 400, 400] * 2)
    forcing = BudgetForcing(max_thinking_tokens=40, num_ignore=1, max_answer_tokens=6)
    for i, q in enumerate(questions):
        prompt = render_messages(engine.tokenizer, [{"role": "user", "content": q}], engine.fmt)
        want = engine.generate(
            [prepare(engine.tokenizer, engine.format_tokens, engine.context_length, prompt, forcing, Sampling())]
        )[0]
        assert results[i] == {
            "role": "assistant",
            "content": want.answer,
            "reasoning": want.thinking,
            "reasoning_content": want.thinking,
            "tool_calls": [],  # as vLLM: always there, empty without tools
        }


def _running(base: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("s1:num_requests_running "):
            return float(line.split()[1])
    raise AssertionError("no s1:num_requests_running in /metrics")


@pytest.mark.slow
def test_disconnected_clients_free_their_slots():
    """Clients that hang up (streaming or not) leave the batch at once, long before their budgets run out.

    The embedded model decodes slowly enough here that 1,500 forced thinking tokens take far longer than
    the few seconds the slots may take to free."""
    with served("--model", "smollm2", "--batch-size", "8") as base:
        body = {
            "messages": [{"role": "user", "content": "long"}],
            "max_thinking_tokens": 1500,
            "min_thinking_tokens": 1500,
            "max_answer_tokens": 50,
        }
        clients = [httpx.Client(timeout=60) for _ in range(4)]
        streams = [c.stream("POST", f"{base}{CHAT}", json={**body, "stream": True}) for c in clients]
        # keep every line iterator alive: a dropped one closes its response, i.e. hangs up early
        readers = [s.__enter__().iter_lines() for s in streams]
        for lines in readers:
            for _ in range(4):
                next(lines)
        with pytest.raises(httpx.ReadTimeout):  # a non-streaming client that gives up
            httpx.post(f"{base}{CHAT}", json=body, timeout=3)
        deadline = time.monotonic() + 120
        while _running(base) < 5:  # all five admitted (a loaded machine may take a while)
            assert time.monotonic() < deadline, "the five requests were never all decoding"
            time.sleep(0.2)
        hung_up = time.monotonic()
        for s, c in zip(streams, clients):
            s.__exit__(None, None, None)
            c.close()
        while _running(base) > 0:
            assert time.monotonic() - hung_up < 15, "disconnected clients kept decoding"
            time.sleep(0.1)
        print(f"5 slots freed {time.monotonic() - hung_up:.2f} s after the clients hung up")


def test_metrics_are_prometheus_text(server):
    post(server, CHAT, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    text = httpx.get(f"{server}/metrics", timeout=10).text
    for name in (
        "s1:num_requests_running",
        "s1:num_requests_waiting",
        "s1:generation_tokens_total",
        "s1:time_to_first_token_seconds_count",
        "s1:generation_tokens_per_second",
        's1:requests_total{status="200"}',
    ):
        assert name in text, name

    def counter(name: str) -> float:
        return float(next(line.split()[1] for line in text.splitlines() if line.startswith(f"s1:{name}_total ")))

    # prompt tokens received, and of those the ones the engine computed (none kept from an earlier request here)
    assert 0 < counter("prefill_tokens") <= counter("prompt_tokens")
