"""Budget forcing's edge cases on the engines that run it in flight (transformers and llama.cpp): what
reaches `answer` (the API's `content`) when a limit cuts the end delimiter, empty extensions, formats."""

from __future__ import annotations

from dataclasses import replace

import pytest

from s1 import S1, BudgetForcing, generate
from s1.engines.hf import HFEngine

QUESTION = "What is 7*8?"


@pytest.fixture(scope="module")
def llamacpp():
    from s1.engines.llamacpp import LlamaCppEngine

    return LlamaCppEngine.load("smollm2", parallel=2, ctx_size=2 * 1024, threads=2)


@pytest.fixture(scope="module")
def hf(tiny):
    return HFEngine(*tiny)


@pytest.mark.parametrize("engine_name", ["hf", "llamacpp"])
@pytest.mark.parametrize("num_ignore", [0, 1])
def test_a_limit_right_after_the_first_delimiter_token_leaves_content_empty(request, engine_name, num_ignore):
    """issue 30 item 7: the limit lands after `<|im_start|>`, the first token of `<|im_start|>answer`; that
    partial delimiter is neither thinking nor answer, so `answer` (the API's content) is empty."""
    engine = request.getfixturevalue(engine_name)
    forcing = BudgetForcing(max_thinking_tokens=60, num_ignore=num_ignore, max_answer_tokens=8)
    [whole] = generate(QUESTION, engine, forcing)
    im_start = engine.tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = whole.output_token_ids.index(im_start, whole.thinking_tokens)  # after the forced newline, if any
    [cut] = generate(QUESTION, engine, replace(forcing, max_tokens=end + 1))
    assert cut.output_token_ids == whole.output_token_ids[: end + 1]
    assert cut.finish_reason == "length"
    assert cut.answer == ""
    assert cut.thinking == whole.thinking


@pytest.mark.parametrize("engine_name", ["hf", "llamacpp"])
def test_an_empty_extension_suppresses_the_end_without_appending_text(request, engine_name):
    """Table 4's "without string": the ignored end is masked and the model's next choice taken instead."""
    engine = request.getfixturevalue(engine_name)
    plain = BudgetForcing(max_thinking_tokens=60, max_answer_tokens=4)
    [whole] = generate(QUESTION, engine, plain)
    assert not whole.capped, "the model never tried to stop thinking; the case proves nothing"
    [suppressed] = generate(QUESTION, engine, replace(plain, num_ignore=1, extensions=("",)))
    end = whole.thinking_tokens
    assert suppressed.extensions_used == 1
    assert suppressed.output_token_ids[:end] == whole.output_token_ids[:end]
    triggers = engine.format_tokens.end_trigger_ids
    assert suppressed.output_token_ids[end] not in triggers  # the model's own next choice, not an end
    assert suppressed.forced_spans == [] or all(kind != "extension" for kind, *_ in suppressed.forced_spans)
    assert suppressed.thinking_tokens > end


def test_the_reprefill_driver_suppresses_an_empty_extension_as_the_engine_does(tiny, hf):
    from s1.engines.reprefill import ReprefillEngine

    forcing = BudgetForcing(max_thinking_tokens=80, num_ignore=2, extensions=("", "Wait"), max_answer_tokens=4)
    inflight = generate([QUESTION, "Hi"], hf, forcing)
    reference = generate([QUESTION, "Hi"], ReprefillEngine.from_model(*tiny), forcing)
    assert any(c.extensions_used for c in inflight)
    for a, b in zip(inflight, reference):
        assert (a.output_token_ids, a.extensions_used) == (b.output_token_ids, b.extensions_used)


def test_an_extension_that_ends_thinking_is_still_refused(hf):
    from s1 import UserError

    hf.format_tokens.check_extension("")  # the deliberate empty extension
    with pytest.raises(UserError, match="ends thinking"):
        hf.format_tokens.check_extension("<|im_end|>")


def test_the_empty_extension_is_named_in_the_setting_label():
    from s1.evaluate.methods import build_settings

    [setting] = build_settings(["budget_forcing"], BudgetForcing(extensions=("",)), [None], [2])
    assert setting.label == "cap=none wait=2 without string"
    [setting] = build_settings(["budget_forcing"], BudgetForcing(), [None], [2])
    assert setting.label == "cap=none wait=2"


@pytest.mark.parametrize("engine_name", ["hf", "llamacpp"])
def test_no_thinking_opens_no_thinking_block(request, engine_name):
    """Table 1's instruct rows: the chat template's plain answer, the whole reply is the answer."""
    engine = request.getfixturevalue(engine_name)
    [c] = generate(QUESTION, engine, BudgetForcing(max_answer_tokens=12), thinking=False)
    assert c.prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>think" not in c.prompt
    assert c.thinking == "" and c.thinking_tokens == 0 and c.answer_tokens == len(c.output_token_ids)
    assert c.answer.strip()


def test_the_none_format_is_a_plain_chat_answer(tiny_dir):
    from s1.engines import load_engine

    engine = load_engine(str(tiny_dir), "hf", "none")
    [c] = generate(QUESTION, engine, BudgetForcing(max_thinking_tokens=10, max_answer_tokens=6))
    assert "<|im_start|>think" not in c.prompt and c.thinking == "" and len(c.output_token_ids) <= 6


TEXT_S1 = replace(S1, name="s1-as-text", end_triggers=(), end_strings=("<|im_start|>", "<|im_end|>"))
"""The s1 format with its ends matched on decoded text instead of by id: it must run exactly as the fast path."""


@pytest.mark.parametrize("engine_name", ["hf", "llamacpp"])
@pytest.mark.parametrize(
    "forcing",
    [
        BudgetForcing(max_thinking_tokens=30, max_answer_tokens=4),
        BudgetForcing(max_thinking_tokens=90, num_ignore=2, max_answer_tokens=4),
        BudgetForcing(max_thinking_tokens=90, min_thinking_tokens=50, max_answer_tokens=4),
    ],
    ids=["cap", "num_ignore", "min"],
)
def test_ends_matched_as_text_run_exactly_as_single_tokens(request, engine_name, forcing):
    engine = request.getfixturevalue(engine_name)
    questions = [QUESTION, "Hi"]
    fast = generate(questions, engine, forcing)
    text = generate(questions, with_format(engine, TEXT_S1), forcing)
    for a, b in zip(fast, text):
        assert (a.output_token_ids, a.thinking_tokens, a.extensions_used, a.capped, a.finish_reason) == (
            b.output_token_ids,
            b.thinking_tokens,
            b.extensions_used,
            b.capped,
            b.finish_reason,
        )
        assert (a.thinking, a.answer) == (b.thinking, b.answer)


def with_format(engine, fmt):
    """The same loaded model under another format (the engine's tokens rebuilt, nothing reloaded)."""
    from copy import copy

    from s1.core.formats import FormatTokens

    other = copy(engine)
    other.format_tokens = FormatTokens.build(engine.tokenizer, fmt)
    return other


def odd_end_string(tokenizer, ids: list[int]) -> tuple[str, int]:
    """Text of the model's own thinking that starts inside one token and ends inside the next, and the index of
    the token its first occurrence starts in."""
    for k in range(1, len(ids) - 1):
        first, second = tokenizer.decode(ids[k : k + 1]), tokenizer.decode(ids[k + 1 : k + 2])
        text = first[1:] + second[:1]
        if len(first) >= 2 and len(second) >= 2 and text.strip():
            at = tokenizer.decode(ids).find(text)
            return text, next(j for j in range(len(ids)) if len(tokenizer.decode(ids[: j + 1])) > at)
    raise AssertionError("no two tokens long enough to split an end string inside them")


ODD = {"hf": "Hi", "llamacpp": "Write the first ten prime numbers and explain how you found each of them."}
"""Questions whose greedy thinking runs long on each engine's model (random words on the tiny one)."""


@pytest.mark.parametrize("engine_name", ["hf", "llamacpp"])
@pytest.mark.parametrize("num_ignore", [0, 1])
def test_an_end_string_split_inside_tokens_ends_or_extends_thinking_where_it_starts(request, engine_name, num_ignore):
    engine = request.getfixturevalue(engine_name)
    forcing = BudgetForcing(max_thinking_tokens=60, max_answer_tokens=4)
    [base] = generate(ODD[engine_name], engine, forcing)
    ids = base.output_token_ids[: base.thinking_tokens]
    end, k = odd_end_string(engine.tokenizer, ids)
    fmt = replace(S1, name="s1-odd-end", end_strings=(end,))
    [c] = generate(ODD[engine_name], with_format(engine, fmt), replace(forcing, num_ignore=num_ignore))
    assert c.output_token_ids[:k] == ids[:k]
    assert end not in c.thinking
    if num_ignore:
        wait = list(engine.tokenizer.encode("Wait", add_special_tokens=False))
        assert c.output_token_ids[k : k + len(wait)] == wait and c.extensions_used >= 1
    else:
        delimiter = list(engine.format_tokens.think_end_ids)
        assert c.thinking_tokens == k and not c.capped
        assert c.output_token_ids[k : k + len(delimiter)] == delimiter


def test_the_reprefill_driver_matches_end_strings_as_the_engine_does(tiny, hf):
    from s1.engines.reprefill import ReprefillEngine

    forcing = BudgetForcing(max_thinking_tokens=60, max_answer_tokens=4)
    [base] = generate("Hi", hf, forcing)
    end, _ = odd_end_string(hf.tokenizer, base.output_token_ids[: base.thinking_tokens])
    fmt = replace(S1, name="s1-odd-end", end_strings=(end,))
    for k in (0, 1):
        a = generate(["Hi", QUESTION], with_format(hf, fmt), replace(forcing, num_ignore=k))
        b = generate(["Hi", QUESTION], ReprefillEngine.from_model(*tiny, fmt=fmt), replace(forcing, num_ignore=k))
        assert [c.output_token_ids for c in a] == [c.output_token_ids for c in b]


def test_no_answer_budget_means_what_the_context_leaves_after_the_cap(hf):
    """s1 eval's default (issue 29 item 7): the answer may use the context the cap and forced end leave."""
    from s1.core.sampling import Sampling
    from s1.engines.base import ANSWER_RESERVE, make_request

    tokens, context = hf.format_tokens, hf.context_length
    ending = len(tokens.forced_end("Final Answer:", after_newline=False))
    for cap in (30, None):
        forcing = BudgetForcing(max_thinking_tokens=cap, max_answer_tokens=None)
        r = make_request(hf.tokenizer, tokens, context, QUESTION, forcing, Sampling())
        prompt = len(r.prompt_token_ids)
        if cap is None:
            assert r.cap == context - prompt - ending - ANSWER_RESERVE
        assert r.forcing.max_answer_tokens == context - prompt - ending - r.cap
    plain = make_request(hf.tokenizer, tokens, context, QUESTION, forcing, Sampling(), thinking=False)
    assert plain.forcing.max_answer_tokens == context - len(plain.prompt_token_ids)


def test_eval_defaults_to_the_context_while_interactive_commands_keep_a_stated_budget():
    from s1.evaluate.config import EvalConfig
    from tests.cli.test_cli import s1

    assert EvalConfig().max_answer_tokens is None and BudgetForcing().max_answer_tokens == 1024
    assert "1024" in " ".join(s1("generate", "--help").stdout.split())


def test_the_server_under_format_none_answers_plainly(tiny_dir):
    """`s1 serve --format none`: the chat template's plain answer, no reasoning, budget fields harmless."""
    import httpx

    from tests.serve.test_serve import served

    with served("--model", str(tiny_dir), "--format", "none", "--served-model-name", "tiny") as base:
        body = {"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 6}
        reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120).json()
        message = reply["choices"][0]["message"]
        assert message["content"] and not message.get("reasoning_content") and not message.get("reasoning")
        assert reply["usage"]["completion_tokens"] <= 6
