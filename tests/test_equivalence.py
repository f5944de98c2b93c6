"""In-flight forcing and s1's re-prefill loop must produce the same tokens under greedy decoding.

The re-prefill loop runs each round through plain `transformers.generate`; the in-flight engine runs
its own batched loop. Mixed prompt lengths make the batches left-padded and rows finish at different
times, so splicing and cutting rows is exercised too.
"""

from __future__ import annotations

import pytest

from s1 import BudgetForcing, generate
from s1.engines.hf import HFEngine
from s1.engines.reprefill import ReprefillEngine

QUESTIONS = [
    "What is 7*8?",
    "Write the first ten prime numbers and explain how you found each of them.",
    "Hi",
    "Why is the sky blue? Answer briefly, please.",
]

SETTINGS = {
    "cap only": BudgetForcing(max_thinking_tokens=40, max_answer_tokens=16),
    "num_ignore 1": BudgetForcing(max_thinking_tokens=120, num_ignore=1, max_answer_tokens=16),
    "num_ignore 3": BudgetForcing(max_thinking_tokens=120, num_ignore=3, max_answer_tokens=16),
    "min thinking": BudgetForcing(max_thinking_tokens=150, min_thinking_tokens=90, max_answer_tokens=16),
    "rotating": BudgetForcing(max_thinking_tokens=120, num_ignore=4, extensions=("Wait", "Hmm", "Alternatively"), max_answer_tokens=16),
    "cap inside extension": BudgetForcing(
        max_thinking_tokens=23, num_ignore=6, extensions=("Wait, let me double check this carefully",), max_answer_tokens=8
    ),
}


def _compare(model, tokenizer, forcing, batch_size=4):
    inflight = generate(QUESTIONS, HFEngine(model, tokenizer), forcing, batch_size=batch_size)
    reference = generate(QUESTIONS, ReprefillEngine.from_model(model, tokenizer), forcing, batch_size=batch_size)
    for a, b in zip(inflight, reference):
        assert a.prompt_token_ids == b.prompt_token_ids
        assert a.output_token_ids == b.output_token_ids
        assert (a.thinking_tokens, a.extensions_used, a.capped, a.finish_reason) == (
            b.thinking_tokens,
            b.extensions_used,
            b.capped,
            b.finish_reason,
        )
        assert a.thinking_tokens <= forcing.max_thinking_tokens
    return inflight


@pytest.mark.parametrize("name", list(SETTINGS))
def test_tiny_model_inflight_matches_reprefill(tiny, name):
    results = _compare(*tiny, SETTINGS[name])
    if "ignore" in name or name == "rotating":
        assert any(r.extensions_used for r in results), "the tiny model never tried to stop; the test proves nothing"
    if name == "min thinking":
        assert all(r.thinking_tokens >= 90 or r.capped for r in results)


def test_tiny_model_exercises_natural_ends(tiny):
    """Without this, matching outputs could all be capped ones and say nothing about natural ends."""
    results = _compare(*tiny, SETTINGS["num_ignore 1"])
    assert any(not r.capped for r in results)


@pytest.mark.parametrize("name", ["cap only", "num_ignore 3", "rotating", "cap inside extension"])
def test_embedded_model_inflight_matches_reprefill(embedded, name):
    forcing = SETTINGS[name]
    _compare(*embedded, forcing)


def test_done_when_example_is_capped_at_twenty(embedded):
    """The issue's acceptance example: 20 thinking tokens, capped, equal to s1's loop."""
    forcing = BudgetForcing(max_thinking_tokens=20, num_ignore=5)
    model, tokenizer = embedded
    [a] = generate("What is 7*8?", HFEngine(model, tokenizer), forcing)
    [b] = generate("What is 7*8?", ReprefillEngine.from_model(model, tokenizer), forcing)
    assert a.thinking_tokens == 20 and a.capped
    assert a.output_token_ids == b.output_token_ids
