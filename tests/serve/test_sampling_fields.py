"""vLLM's sampling fields through `s1 serve`, driven by the openai SDK: `top_k`, `min_p`, `repetition_penalty`,
`presence_penalty` and `frequency_penalty` reach the engine's sampler (each reply is the in-process one with the
same settings), and a value no sampler can honour is a 400 naming the field."""

from __future__ import annotations

import pytest

from s1 import BudgetForcing, Sampling, generate
from s1.engines.hf import HFEngine
from tests.serve.test_serve import served

QUESTION = "List the numbers from one to ten, then say them again."
BUDGET = {"max_thinking_tokens": 24, "max_answer_tokens": 8}
FORCING = BudgetForcing(max_thinking_tokens=24, max_answer_tokens=8)
HOT = 30.0
"""The tiny random model's logits are far apart: only a high temperature makes its draws differ from greedy."""


@pytest.fixture(scope="module")
def client(tiny_dir):
    from openai import OpenAI

    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "4") as base:
        yield OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def engine(tiny):
    return HFEngine(*tiny, threads=1)


def ask(client, **fields) -> str:
    """The reply's thinking and answer for QUESTION with these fields (as extra_body: the SDK has no top_k)."""
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}], extra_body={**BUDGET, **fields}
    )
    message = reply.choices[0].message
    return message.model_extra["reasoning_content"] + "|" + message.content


def in_process(engine, sampling: Sampling) -> str:
    c = generate([QUESTION], engine, FORCING, sampling)[0]
    return c.thinking + "|" + c.answer


def test_each_field_reaches_the_sampler(client, engine):
    greedy = ask(client)
    assert greedy == in_process(engine, Sampling())
    penalties = {"repetition_penalty": 1.6, "presence_penalty": -2.0, "frequency_penalty": 1.5}
    for field, value in penalties.items():
        assert ask(client, **{field: value}) == in_process(engine, Sampling(**{field: value})), field
    assert ask(client, repetition_penalty=1.6) != greedy
    # top_k 1 and min_p 1 leave the most likely token alone: sampling is then greedy, whatever the temperature
    for seed in (0, 1):
        assert ask(client, temperature=HOT, seed=seed) != greedy
        assert ask(client, temperature=HOT, seed=seed, top_k=1) == greedy
        assert ask(client, temperature=HOT, seed=seed, min_p=1.0) == greedy
    sampled = ask(client, temperature=HOT, seed=4, top_k=20, min_p=0.05)
    assert sampled == in_process(engine, Sampling(temperature=HOT, seed=4, top_k=20, min_p=0.05))


@pytest.mark.parametrize(
    "field, value",
    [("top_k", -5), ("min_p", 2), ("repetition_penalty", 0), ("presence_penalty", 9), ("frequency_penalty", -2.5)],
)
def test_a_value_no_sampler_honours_is_a_400_naming_the_field(client, field, value):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, **{field: value})
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == field and field in error["message"], error
    assert "Traceback" not in error["message"]
    assert ask(client), "the server keeps serving"
