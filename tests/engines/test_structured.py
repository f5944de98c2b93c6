"""The answer after thinking under a JSON schema's grammar in the transformers engine (the llama.cpp engine is
driven through the server in tests/serve/test_structured_output.py): a random model, which never writes JSON
by itself, answers with JSON that validates, in a batch beside unconstrained rows that are left as they were."""

from __future__ import annotations

import json
from dataclasses import replace

import jsonschema
import pytest

from s1 import BudgetForcing, Sampling
from s1.core.errors import UserError
from s1.engines.base import make_request
from s1.engines.hf import HFEngine
from s1.engines.structured import json_grammar

SCHEMA = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Rome"]}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["city", "n"],
    "additionalProperties": False,
}


def test_a_random_model_answers_with_json_that_validates_and_thinks_freely(tiny):
    engine = HFEngine(*tiny, threads=1)
    forcing = BudgetForcing(max_thinking_tokens=6, max_answer_tokens=30, answer_prefix="")
    grammar = json_grammar(SCHEMA)
    requests = [
        make_request(
            engine.tokenizer, engine.format_tokens, engine.context_length, f"Q{i}?", forcing, Sampling(1.0, seed=i)
        )
        for i in range(4)
    ]
    free = engine.generate(requests, batch_size=4)
    ruled = engine.generate([replace(r, grammar=grammar) for r in requests] + requests[:1], batch_size=5)
    for c, f in zip(ruled, free):
        jsonschema.validate(json.loads(c.answer), SCHEMA)
        assert c.finish_reason == "stop"
        assert c.thinking == f.thinking, "the thinking is not constrained"
    assert not free[0].answer.startswith("{") and ruled[4].answer == free[0].answer, "unconstrained rows unchanged"


def test_a_schema_the_library_cannot_use_is_one_sentence():
    with pytest.raises(UserError) as caught:
        json_grammar({"type": "nonsense"})
    assert str(caught.value).startswith("The JSON schema cannot be used") and "\n" not in str(caught.value)
