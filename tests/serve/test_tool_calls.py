"""Tool calls through `s1 serve` with the openai SDK, on a model whose chat template defines tools (the tiny model
given a Hermes/Qwen-style template): the tools reach the template, a `<tool_call>` in the answer comes back as
`tool_calls` (streamed too) with finish_reason `tool_calls`, and the agent loop's next turn (the reply appended,
then the tool's result) renders. The call is written by budget forcing's answer prefix, so the random model's
answer holds one whatever it samples: what is tested is the server's part, not the model's skill."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.serve.test_serve import served

TEMPLATE = """{%- if tools %}<|im_start|>system
You may call these tools:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
Call one as <tool_call>{"name": NAME, "arguments": ARGS}</tool_call>.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{%- for call in message.tool_calls %}
<tool_call>
{{ {"name": call.function.name, "arguments": call.function.arguments} | tojson }}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCED = {"max_thinking_tokens": 4, "max_answer_tokens": 3, "answer_prefix": CALL}


@pytest.fixture(scope="module")
def client(tiny_dir, tmp_path_factory):
    from openai import OpenAI
    from transformers import AutoTokenizer

    model = tmp_path_factory.mktemp("tools") / "model"
    shutil.copytree(tiny_dir, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(model)
    with served("--model", str(model), "--served-model-name", "tiny", "--batch-size", "2") as base:
        yield OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)


def test_a_call_in_the_answer_comes_back_as_tool_calls_and_the_loop_goes_on(client):
    plain = client.chat.completions.create(model="tiny", messages=ASK, extra_body=FORCED)
    assert plain.choices[0].message.tool_calls is None or plain.choices[0].message.tool_calls == []
    assert CALL in plain.choices[0].message.content, "without tools the answer is left as written"

    reply = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, extra_body=FORCED)
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens, "the template rendered the tools"
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert "<tool_call>" not in (choice.message.content or "")
    assert choice.message.model_extra["reasoning"] is not None, "thinking is returned as before"

    messages = [*ASK, choice.message, {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"}]
    again = client.chat.completions.create(model="tiny", messages=messages, tools=TOOLS, max_tokens=8)
    assert again.usage.prompt_tokens > reply.usage.prompt_tokens, "the call and its result were rendered"

    unparsed = client.chat.completions.create(
        model="tiny", messages=ASK, tools=TOOLS, tool_choice="none", extra_body=FORCED
    )
    assert not unparsed.choices[0].message.tool_calls and unparsed.choices[0].finish_reason != "tool_calls"


def test_streamed_calls_arrive_whole_and_no_markup_leaks_into_content(client):
    stream = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, stream=True, extra_body=FORCED)
    content, calls, finish = "", [], None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        calls += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert "<tool_call" not in content and finish == "tool_calls"
    [call] = calls
    assert call.index == 0 and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_fields_the_server_cannot_honour_are_400s_naming_them(client):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required")
    assert caught.value.body["param"] == "tool_choice" and "guided decoding" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=ASK, tool_choice="auto")
    assert caught.value.body["param"] == "tool_choice"
