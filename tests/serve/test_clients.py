"""`s1 serve` as a drop-in for vLLM's OpenAI server, driven by the clients users have: the openai SDK (chat,
multi-turn with the reply appended, the Responses API streamed and not), litellm, inspect-ai. A real server on
127.0.0.1 with an API key from the environment (S1_API_KEY, as vLLM's VLLM_API_KEY), real clients, no mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.serve.test_serve import start_server, stop_server

KEY = "s1-test-key-0123456789"
CAPS = "minimal=3,low=5,medium=7,high=9,xhigh=11,max=100000"
"""--reasoning-effort-caps of the module's server; `max` is more than the context holds (it becomes the room left)."""


@pytest.fixture(scope="module")
def server(tiny_dir):
    with contextlib.ExitStack() as stack:
        stack.enter_context(pytest.MonkeyPatch.context()).setenv("S1_API_KEY", KEY)
        proc, base = start_server(
            "--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "4",
            "--reasoning-effort-caps", CAPS,
        )  # fmt: skip
        stack.callback(stop_server, proc)
        yield base


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key=KEY)


def post(base: str, path: str, body: dict, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{base}{path}", json=body, headers=headers, timeout=120)


def rendered(base: str, messages: list) -> list[int]:
    """The chat template's tokens for `messages`, from the server's own /tokenize."""
    return post(base, "/tokenize", {"messages": messages}).json()["tokens"]


HI = [{"role": "user", "content": "What is 7*8?"}]


# -- the openai SDK ---------------------------------------------------------------------------------------------
def test_openai_sdk_multi_turn_with_the_reply_appended(server, client):
    """The SDK's usual loop appends `choice.message` (which carries `reasoning_content` and `reasoning`); the next
    turn is accepted and rendered as the chat template renders it (SmolLM2's drops the past reasoning)."""
    messages = list(HI)
    budget = {"max_thinking_tokens": 6}
    first = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, extra_body=budget)
    reply = first.choices[0].message
    assert reply.reasoning == reply.reasoning_content and reply.reasoning_content
    messages.append(reply)
    messages.append({"role": "user", "content": "Are you sure?"})
    second = client.chat.completions.with_raw_response.create(
        model="tiny", messages=messages, max_tokens=24, extra_body=budget
    )
    assert second.status_code == 200 and "x-s1-ignored-fields" not in second.headers
    past = [*HI, {"role": "assistant", "content": reply.content}, {"role": "user", "content": "Are you sure?"}]
    thinking_opened = len(rendered(server, past)) + 2  # `<|im_start|>think`, as s1's format opens it: 2 tokens
    assert second.parse().usage.prompt_tokens == thinking_opened


def test_unknown_fields_and_nulls_are_ignored_and_reported_known_ones_are_refused(server, client):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=HI,
        max_tokens=4,
        metadata={"run": "1"},
        store=False,
        service_tier="auto",
        prediction={"type": "content", "content": "56"},
        parallel_tool_calls=True,
        extra_body={"min_p": 0.0, "n": None, "stream": None, "logprobs": None, "frequency_penalty": None},
    )
    assert raw.status_code == 200
    ignored = set(raw.headers["x-s1-ignored-fields"].split(", "))
    assert ignored == {"metadata", "store", "service_tier", "prediction"}
    plain = post(server, "/v1/completions", {"prompt": "One two", "max_tokens": 3, "echo": None, "n": None})
    assert plain.status_code == 200 and "x-s1-ignored-fields" not in plain.headers
    hostile = post(
        server, "/v1/completions", {"prompt": "One", "max_tokens": 2, "é\nx": 1, **{f"f{i}": i for i in range(40)}}
    )
    assert hostile.status_code == 200
    assert (
        hostile.headers["x-s1-ignored-fields"].startswith("\\xe9\\x0ax, f0, ")
        and "and 9 more" in hostile.headers["x-s1-ignored-fields"]
    )
    no_thinking = post(server, "/v1/completions", {"prompt": "One two", "max_tokens": 3, "reasoning_effort": "none"})
    assert no_thinking.status_code == 200 and "reasoning" not in no_thinking.json()["choices"][0], (
        "a plain continuation"
    )
    for field, value in (("use_beam_search", True), ("guided_regex", "[0-9]+"), ("min_p", 1.5)):
        r = post(server, "/v1/chat/completions", {"messages": HI, field: value})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == field and field in error["message"] and error["type"] == "invalid_request_error"


def test_n_choices_of_a_seed_never_repeat_another_seeds_samples(server):
    """Choice k of seed s used to be seed s + k, the very sample choice 0 of seed s + k is (failed before the fix)."""

    def texts(seed: int, n: int) -> list[str]:
        body = {"messages": HI, "max_tokens": 12, "temperature": 1.0, "seed": seed, "n": n, "max_thinking_tokens": 8}
        choices = post(server, "/v1/chat/completions", body).json()["choices"]
        return [c["message"]["reasoning"] + "|" + c["message"]["content"] for c in choices]

    five, six = texts(5, 3), texts(6, 1)
    assert five[0] == texts(5, 1)[0], "one choice uses exactly the seed the client sent, as vLLM does"
    assert six[0] not in five[1:]
    assert len(set(five)) == 3


def test_thinking_controls_under_every_name(server, client):
    def chat(**fields) -> dict:
        r = post(server, "/v1/chat/completions", {"messages": HI, "max_answer_tokens": 3, **fields})
        assert r.status_code == 200, r.text
        return r.json()

    for fields in (
        {"thinking_token_budget": 4},
        {"thinking_budget_tokens": 4},
        {"thinking": {"type": "enabled", "budget_tokens": 4}},
        {"max_thinking_tokens": 4, "thinking_token_budget": 4},
        {"reasoning_effort": "minimal"},
    ):
        s1 = chat(**fields, min_thinking_tokens=3)["s1"]
        cap = 3 if "reasoning_effort" in fields else 4
        assert 3 <= s1["thinking_tokens"] <= cap, (fields, s1)
    for fields in ({"reasoning_effort": "none"}, {"chat_template_kwargs": {"enable_thinking": False}}):
        r = chat(**fields)
        message = r["choices"][0]["message"]
        assert r["s1"]["thinking_tokens"] == 0 and message["reasoning"] is None and message["reasoning_content"] is None
        assert r["usage"]["completion_tokens"] == r["s1"]["answer_tokens"] <= 3, "no delimiter in the output"
    hidden = chat(max_thinking_tokens=5, include_reasoning=False)
    assert hidden["s1"]["thinking_tokens"] > 0 and hidden["choices"][0]["message"]["reasoning"] is None
    unlimited = chat(thinking_token_budget=-1, min_thinking_tokens=20, num_ignore=20)["s1"]
    assert unlimited["thinking_tokens"] >= 20
    assert chat(reasoning_effort="max")["s1"]["thinking_tokens"] >= 0, "a level the context cannot hold still runs"
    r = post(server, "/v1/chat/completions", {"messages": HI, "thinking_token_budget": 4, "max_thinking_tokens": 9})
    assert r.status_code == 400 and "thinking_token_budget=4" in r.json()["error"]["message"]
    r = post(server, "/v1/chat/completions", {"messages": HI, "thinking_token_budget": 100000})
    assert r.status_code == 400 and "lower thinking_token_budget" in r.json()["error"]["message"], r.text


def test_max_tokens_below_the_thinking_cap_says_why_the_answer_is_empty(server, client):
    reply = client.chat.completions.create(
        model="tiny", messages=HI, max_tokens=6, extra_body={"max_thinking_tokens": 40, "min_thinking_tokens": 40}
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and choice.message.content == ""
    assert "max_tokens (6) ended this reply" in reply.s1["note"] and "note" in choice.s1
    roomy = client.chat.completions.create(
        model="tiny", messages=HI, max_tokens=60, extra_body={"max_thinking_tokens": 8, "max_answer_tokens": 4}
    )
    assert "note" not in roomy.s1


# -- the Responses API ------------------------------------------------------------------------------------------
def test_responses_api_returns_reasoning_and_message_items(server, client):
    response = client.responses.create(
        model="tiny",
        input=[{"role": "user", "content": "What is 7*8?"}],
        instructions="Answer briefly.",
        max_output_tokens=30,
        reasoning={"effort": "low"},
        extra_body={"max_answer_tokens": 6},
    )
    assert response.status in ("completed", "incomplete")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert response.usage.output_tokens_details.reasoning_tokens == response.s1["thinking_tokens"] <= 5
    assert reasoning.content[0].text and response.output_text == message.content[0].text
    assert response.usage.output_tokens <= 30


def test_responses_api_stream_sends_the_events_in_order(server, client):
    kinds = []
    budget = {"max_thinking_tokens": 6, "max_answer_tokens": 5}
    with client.responses.stream(model="tiny", input="What is 7*8?", max_output_tokens=40, extra_body=budget) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and final.status == "completed"
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    reasoning = ["response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
                 "response.reasoning_text.done", "response.content_part.done", "response.output_item.done"]  # fmt: skip
    message = [k.replace("reasoning_text", "output_text") for k in reasoning]
    assert collapsed[2:-1] == reasoning + message, collapsed
    once = client.responses.create(model="tiny", input="What is 7*8?", max_output_tokens=40, extra_body=budget)
    assert final.output_text == once.output_text and final.output[0].content[0].text == once.output[0].content[0].text


# -- litellm and inspect-ai -------------------------------------------------------------------------------------
def test_litellm_thinking_maps_onto_the_budget(server):
    """litellm turns `thinking=` into `reasoning_effort` for vLLM (hosted_vllm/): minimal here (cap 3), and passes
    `thinking` itself where asked to (openai/ with allowed_openai_params): the budget exactly."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network here
    import litellm

    common = dict(api_base=f"{server}/v1", api_key=KEY, max_tokens=40, max_answer_tokens=4)
    messages = list(HI)
    thinking = {"type": "enabled", "budget_tokens": 500}
    r = litellm.completion(model="hosted_vllm/tiny", messages=messages, thinking=thinking, **common)
    assert (
        r.usage.completion_tokens_details.reasoning_tokens <= 3 and r.choices[0].message.reasoning_content is not None
    )
    messages += [r.choices[0].message, {"role": "user", "content": "Again?"}]  # litellm's multi-turn
    r = litellm.completion(
        model="openai/tiny",
        messages=messages,
        thinking={"type": "enabled", "budget_tokens": 6},
        allowed_openai_params=["thinking"],
        min_thinking_tokens=6,
        **common,
    )
    assert r.usage.completion_tokens_details.reasoning_tokens == 6


def test_inspect_ai_default_provider_over_the_responses_api_two_generates(server, tmp_path):
    """inspect-ai's `openai/` provider with the Responses API, a solver that generates twice (the second turn
    replays the first reply's reasoning item and message), run in its own process as a user runs it."""
    script = f"""
import json
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.log import ModelEvent
from inspect_ai.model import ChatMessageUser
from inspect_ai.scorer import match
from inspect_ai.solver import solver

@solver
def twice():
    async def solve(state, generate):
        state = await generate(state)
        state.messages.append(ChatMessageUser(content="Are you sure? Answer again."))
        return await generate(state)
    return solve

task = Task(dataset=[Sample(input="What is 2+2?", target="4")], solver=twice(), scorer=match())
[log] = eval(task, model="openai/tiny", model_args={{"responses_api": True}}, log_dir={str(tmp_path)!r},
             display="none", max_tokens=40, reasoning_effort="low")
sample = log.samples[0]
events = [e for e in sample.events if isinstance(e, ModelEvent)]
print(json.dumps({{"status": log.status, "error": str(log.error),
    "inputs": [e.call.request["input"] for e in events],
    "reasoning_tokens": [e.output.usage.reasoning_tokens for e in events],
    "roles": [m.role for m in sample.messages]}}))
"""
    env = dict(os.environ, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=f"{server}/v1", INSPECT_LOG_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "success", result["error"]
    assert result["roles"] == ["user", "assistant", "user", "assistant"]
    first, second = result["inputs"]
    assert [item.get("type", "message") for item in second] == ["message", "reasoning", "message", "message"]
    assert all(0 <= n <= 5 for n in result["reasoning_tokens"]), "reasoning_effort low: cap 5 on this server"


# -- access and errors ------------------------------------------------------------------------------------------
def test_api_key_guards_v1_routes_and_every_error_has_openai_shape(server):
    from openai import AuthenticationError, NotFoundError, OpenAI

    near = KEY[:-1] + chr(ord(KEY[-1]) + 1)
    for key in (None, "wrong", near, KEY + "x"):
        r = post(server, "/v1/chat/completions", {"messages": HI, "max_tokens": 2}, key=key)
        assert r.status_code == 401, key
        error = r.json()["error"]
        assert error["code"] == 401 and error["type"] == "authentication_error" and "API key" in error["message"]
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{server}/v1", api_key=near).models.list()
    assert post(server, "/v1/chat/completions", {"messages": HI, "max_tokens": 2}).status_code == 200
    assert httpx.get(f"{server}/health", timeout=10).status_code == 200
    assert httpx.get(f"{server}/ping", timeout=10).status_code == 200
    assert httpx.get(f"{server}/version", timeout=10).json()["version"]
    for path in ("/nowhere", "/v1/nowhere"):
        r = httpx.get(f"{server}{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == 404 and path in r.json()["error"]["message"]
    client = OpenAI(base_url=f"{server}/v1", api_key=KEY)
    card = client.models.retrieve("tiny")
    assert card.id == "tiny" and card.created > 0 and card.root
    with pytest.raises(NotFoundError):
        client.models.retrieve("gpt-9")
    metrics = httpx.get(f"{server}/metrics", timeout=10).text
    assert 'vllm:num_requests_running{model_name="tiny"}' in metrics and "vllm:generation_tokens_total" in metrics


def test_tokenizer_endpoints_match_the_local_tokenizer(server, tiny):
    _, tokenizer = tiny
    text = "Paris is the capital of France"
    r = post(server, "/tokenize", {"prompt": text, "add_special_tokens": False, "return_token_strs": True}).json()
    assert r["tokens"] == tokenizer.encode(text, add_special_tokens=False) and r["count"] == len(r["tokens"])
    assert r["token_strs"] == tokenizer.convert_ids_to_tokens(r["tokens"]) and r["max_model_len"] == 2048
    assert post(server, "/detokenize", {"tokens": r["tokens"]}).json()["prompt"] == text
    info = httpx.get(f"{server}/tokenizer_info", timeout=10).json()
    assert info["eos_token"] == tokenizer.eos_token and info["chat_template"] == tokenizer.chat_template
    bad = post(server, "/detokenize", {"tokens": [10**9]})
    assert bad.status_code == 400 and "vocabulary" in bad.json()["error"]["message"]
    assert post(server, "/tokenize", {}).status_code == 400


def test_models_path_prints_where_the_model_files_are(tiny_dir):
    done = subprocess.run(
        [sys.executable, "-m", "s1", "models", "path", str(tiny_dir)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == str(tiny_dir.resolve())
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(done.stdout.strip()).eos_token == "<|im_end|>"
    missing = subprocess.run(
        [sys.executable, "-m", "s1", "models", "path", "/no/such/model"], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


# -- the chat template's own variables (in process: the translation, with a real tokenizer) ---------------------
TEMPLATE = (
    "{% if persona is defined %}<|im_start|>system\n{{ persona }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if loop.first and m.role == 'assistant' %}{{ raise_exception('start with a user') }}"
    "{% endif %}<|im_start|>{{ m.role }}\n{% if m.reasoning_content %}[{{ m.reasoning_content }}]{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<|im_start|>think\n<|im_start|>answer\n{% endif %}"
    "{% endif %}"
)
"""A template that reads variables, as Qwen3's reads `enable_thinking` (and closes an empty thinking block for it)."""


@pytest.fixture(scope="module")
def translator(tiny_dir):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from s1.core.formats import S1, FormatTokens
    from s1.engines.registry import spec
    from s1.serve.protocol import Defaults
    from s1.serve.translate import Translator

    def make(template: str | None):
        tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
        if template is not None:
            tokenizer.chat_template = template
        served = SimpleNamespace(
            tokenizer=tokenizer, format_tokens=FormatTokens.build(tokenizer, S1), context_length=2048
        )
        return Translator(served, "tiny", spec("hf"), Defaults())

    return make


def test_chat_template_kwargs_reach_the_template_and_enable_thinking_false_closes_thinking(translator):
    from s1.serve.protocol import BadRequest, ChatBody

    def job(template, **fields):
        [j] = translator(template).chat(ChatBody(messages=HI, **fields))
        return j

    j = job(TEMPLATE, chat_template_kwargs={"persona": "a pirate"})
    assert j.request.prompt.startswith("<|im_start|>system\na pirate") and j.request.prompt.endswith("think")
    # the template closes the empty block itself: the prompt is its text, the reply is all answer
    j = job(TEMPLATE, chat_template_kwargs={"enable_thinking": False})
    assert j.request.prompt.endswith("assistant\n<|im_start|>think\n<|im_start|>answer\n") and j.request.plain
    assert not j.show_reasoning
    # a template that ignores enable_thinking (SmolLM2's): s1 opens and closes the block the same way
    j = job(None, chat_template_kwargs={"enable_thinking": False})
    assert j.request.prompt.endswith("assistant\n<|im_start|>think\n<|im_start|>answer\n") and j.request.plain
    past = [*HI, {"role": "assistant", "content": "56", "reasoning": "7*8"}, {"role": "user", "content": "Sure?"}]
    assert "[7*8]56" in translator(TEMPLATE).chat(ChatBody(messages=past))[0].request.prompt
    with pytest.raises(BadRequest, match="chat template refused these messages: start with a user"):
        translator(TEMPLATE).chat(ChatBody(messages=[{"role": "assistant", "content": "hi"}]))
    with pytest.raises(BadRequest, match="chat_template_kwargs may not set add_generation_prompt, tokenize"):
        job(None, chat_template_kwargs={"tokenize": True, "add_generation_prompt": False})
