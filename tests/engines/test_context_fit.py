"""A request that cannot fit the model's context is refused naming the part that is too long (the prompt, the
answer prefix, the answer budget, the thinking cap) and a value that would fit, which is checked by preparing
the request again with it: never "lower max_thinking_tokens to at most 0", which could not help."""

from __future__ import annotations

import re

import pytest

from s1 import BudgetForcing, Sampling, UserError
from s1.core.formats import FormatTokens, get_format
from s1.engines.base import prepare

CONTEXT = 512


@pytest.fixture(scope="module")
def parts(embedded):
    _, tokenizer = embedded
    return tokenizer, FormatTokens.build(tokenizer, get_format("s1"))


def _prepare(parts, prompt: str, **forcing):
    tokenizer, tokens = parts
    return prepare(tokenizer, tokens, CONTEXT, prompt, BudgetForcing(**forcing), Sampling())


def _refusal(parts, prompt: str, **forcing) -> str:
    with pytest.raises(UserError) as caught:
        _prepare(parts, prompt, **forcing)
    text = str(caught.value)
    assert "at most 0" not in text and "at most -" not in text, text
    return text


def test_a_prompt_longer_than_the_context_blames_the_prompt(parts):
    text = _refusal(parts, "word " * 600, max_thinking_tokens=8)
    assert text.startswith("The prompt alone is") and "shorten the prompt" in text
    assert "max_thinking_tokens" not in text and "max_answer_tokens" not in text


def test_a_long_answer_prefix_is_blamed_on_the_answer_prefix_with_a_length_that_fits(parts):
    text = _refusal(parts, "Q", answer_prefix="x " * 600, max_thinking_tokens=8)
    assert text.startswith("answer_prefix is") and "thinking" not in text.split(";")[1].replace("one thinking", "")
    fits = int(re.search(r"shorten answer_prefix to at most (\d+) tokens", text)[1])
    tokenizer, _ = parts
    prefix = tokenizer.decode(tokenizer("x " * 600, add_special_tokens=False)["input_ids"][:fits])
    _prepare(parts, "Q", answer_prefix=prefix, max_thinking_tokens=1, max_answer_tokens=1)


def test_an_answer_budget_that_leaves_no_room_to_think_names_the_answer_budget(parts):
    text = _refusal(parts, "Q", max_answer_tokens=CONTEXT)
    assert "max_answer_tokens (512) leave no room to think" in text
    fits = int(re.search(r"lower max_answer_tokens to at most (\d+)", text)[1])
    assert _prepare(parts, "Q", max_answer_tokens=fits).cap == 1


def test_a_thinking_cap_too_large_says_what_either_budget_would_fit(parts):
    text = _refusal(parts, "Q", max_thinking_tokens=400, max_answer_tokens=200)
    thinking = int(re.search(r"max_thinking_tokens to at most (\d+)", text)[1])
    answer = int(re.search(r"max_answer_tokens to at most (\d+)", text)[1])
    assert _prepare(parts, "Q", max_thinking_tokens=thinking, max_answer_tokens=200).cap == thinking
    assert _prepare(parts, "Q", max_thinking_tokens=400, max_answer_tokens=answer).cap == 400


@pytest.mark.parametrize("cap", [0, None, 8])
def test_the_answer_budget_left_to_the_context_fits_any_cap(parts, cap):
    """`s1 eval`'s default answer budget (none: what the context leaves) with cap 0 (no thinking), no cap or a
    cap: the request is prepared, and prompt + cap + forced end + answer fit the context."""
    tokenizer, tokens = parts
    request = _prepare(parts, "What is 2+2?", max_thinking_tokens=cap, max_answer_tokens=None)
    ending = len(tokens.forced_end(request.forcing.answer_prefix, after_newline=False))
    used = len(request.prompt_token_ids) + request.cap + ending + request.forcing.max_answer_tokens
    assert used <= CONTEXT and request.forcing.max_answer_tokens >= 1
    if cap is not None:
        assert request.cap == cap


def test_a_grace_that_leaves_no_room_for_the_answer_is_named(parts):
    """With the answer left to the context, a cap that fits and a grace that does not: the message names the
    grace, not only the cap; at cap 0 (no thinking) a grace takes no room at all."""
    text = _refusal(parts, "Q", max_thinking_tokens=10, thinking_grace_tokens=CONTEXT, max_answer_tokens=None)
    assert "its grace" in text and "lower the cap or the grace" in text and "\n" not in text
    request = _prepare(parts, "Q", max_thinking_tokens=0, thinking_grace_tokens=CONTEXT, max_answer_tokens=None)
    alone = _prepare(parts, "Q", max_thinking_tokens=0, max_answer_tokens=None)
    assert request.forcing.max_answer_tokens == alone.forcing.max_answer_tokens
