"""response_format through `s1 serve` with the openai SDK: a JSON schema shapes the answer after thinking (a
grammar over the answer's tokens, llguidance), while the thinking stays free and budget forcing caps and
extends it as asked. On the embedded model (a real model, llama.cpp engine), 20 requests each return JSON that
validates against the schema."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from tests.serve.test_serve import served

SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "integer", "minimum": 0, "maximum": 1000},
        "unit": {"enum": ["cm", "m", "km"]},
        "sure": {"type": "boolean"},
    },
    "required": ["answer", "unit", "sure"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "length", "schema": SCHEMA}}
BUDGET = {"max_thinking_tokens": 8, "min_thinking_tokens": 6, "num_ignore": 1, "max_answer_tokens": 40}


@pytest.fixture(scope="module")
def client():
    from openai import OpenAI

    args = ("--model", "smollm2", "--engine", "llamacpp", "--served-model-name", "m", "--batch-size", "4")
    with served(*args, "--ctx-size", "4096") as base:
        yield OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=600)


@pytest.mark.slow
def test_20_requests_with_a_json_schema_each_return_valid_json_and_thinking_is_capped(client):
    def ask(i: int):
        return client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": f"How long is object number {i}? Answer in JSON."}],
            response_format=FORMAT,
            temperature=0.8,
            seed=i,
            extra_body=BUDGET,
        )

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, range(20)))
    for reply in replies:
        choice, s1 = reply.choices[0], reply.model_extra["s1"]
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
        assert choice.finish_reason == "stop"
        assert 6 <= s1["thinking_tokens"] <= 8, s1
        assert choice.message.model_extra["reasoning"], "the thinking is returned, unconstrained"
    assert len({r.choices[0].message.content for r in replies}) > 1, "sampling still samples"


def test_json_object_and_bad_formats(client):
    import openai

    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Give me a JSON object."}],
        response_format={"type": "json_object"},
        extra_body={"max_thinking_tokens": 4, "max_answer_tokens": 24},
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    else:  # cut by max_answer_tokens: still a prefix of JSON the grammar allowed
        assert reply.choices[0].message.content.startswith("{")
    for fmt, extra in (
        ({"type": "json_schema", "json_schema": {"name": "x"}}, {}),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}, {}),
        ({"type": "xml"}, {}),
        ({"type": "json_object"}, {"answer_prefix": "Final Answer:"}),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], response_format=fmt, extra_body=extra
            )
        assert caught.value.body["param"] in ("response_format", "answer_prefix"), caught.value.body


def test_the_responses_api_takes_the_schema_as_text_format(client):
    """OpenAI's Responses API puts the schema beside the type (`text.format`); the answer validates the same."""
    import openai

    response = client.responses.create(
        model="m",
        input="How long is a pencil? Answer in JSON.",
        text={"format": {"type": "json_schema", "name": "length", "schema": SCHEMA}},
        extra_body={"max_thinking_tokens": 4, "max_answer_tokens": 40},
    )
    jsonschema.validate(json.loads(response.output_text), SCHEMA)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input="hi", text={"format": {"type": "json_schema", "name": "x"}})
    assert caught.value.body["param"] == "text.format"
