"""The budget-forcing settings and the state machine, driven token by token on the real tokenizer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from s1 import BudgetForcing, UserError
from s1.core.formats import S1, FormatTokens, encode
from s1.core.sampling import Sampling
from s1.engines.base import Request, new_state

IM_START, IM_END = 1, 2


@pytest.fixture(scope="module")
def tokens(embedded):
    return FormatTokens.build(embedded[1], S1)


def drive(tokens, forcing: BudgetForcing, script: list[int], cap: int | None = None):
    """Feed a fixed sequence of model choices to a fresh state; returns the state."""
    request = Request("p", [1, 2, 3], forcing, Sampling(), cap or forcing.max_thinking_tokens)
    state = new_state(request, tokens)
    choices = iter(script)
    for _ in range(1000):
        if state.next_token(lambda: next(choices)) is None or state.done:
            break
    return state


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(max_thinking_tokens=1.5), "max_thinking_tokens"),
        (dict(max_tokens=-1), "max_tokens"),
        (dict(max_thinking_tokens=-5), "max_thinking_tokens"),
        (dict(min_thinking_tokens=-1), "min_thinking_tokens"),
        (dict(max_thinking_tokens=10, min_thinking_tokens=20), "larger than"),
        (dict(num_ignore=-1), "num_ignore"),
        (dict(max_answer_tokens=0), "max_answer_tokens"),
        (dict(extensions=()), "extensions"),
        (dict(extensions=("Wait", 3)), "extensions"),
        (dict(max_thinking_tokens=True), "max_thinking_tokens"),
        (dict(thinking_grace_tokens=-1), "thinking_grace_tokens"),
        (dict(thinking_grace_tokens=2.5), "thinking_grace_tokens"),
        (dict(thinking_grace_tokens=True), "thinking_grace_tokens"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, words):
    with pytest.raises(UserError, match=words):
        BudgetForcing(**kwargs)


def test_cap_forces_end_and_answer_prefix(tokens, embedded):
    tok = embedded[1]
    forcing = BudgetForcing(max_thinking_tokens=5, max_answer_tokens=3)
    state = drive(tokens, forcing, [100] * 5 + [200, 201, 202, 203])
    forced = encode(tok, "\n<|im_start|>answer\nFinal Answer:")
    assert state.output == [100] * 5 + forced + [200, 201, 202]
    assert (state.thinking_tokens, state.capped, state.answer_tokens, state.finish_reason) == (5, True, 3, "length")
    assert state.thinking_end == 5


def test_forced_end_skips_newline_when_thinking_ends_in_one(tokens, embedded):
    newline = encode(embedded[1], "\n")[0]
    state = drive(tokens, BudgetForcing(max_thinking_tokens=2, max_answer_tokens=1), [100, newline, IM_END])
    assert state.output[2:] == encode(embedded[1], "<|im_start|>answer\nFinal Answer:") + [IM_END]
    assert state.finish_reason == "stop"


def test_ignored_ends_become_rotating_extensions(tokens, embedded):
    tok = embedded[1]
    forcing = BudgetForcing(max_thinking_tokens=100, num_ignore=3, extensions=("Wait", "Hmm"), max_answer_tokens=5)
    script = [100, IM_START, 101, IM_END, 102, IM_START, 103, IM_START, 300, IM_END]
    state = drive(tokens, forcing, script)
    wait, hmm = encode(tok, "Wait"), encode(tok, "Hmm")
    thinking = [100] + wait + [101] + hmm + [102] + wait + [103]
    # The fourth attempt is a natural end: `<|im_start|>` stays and `answer` completes the delimiter.
    assert state.output == thinking + [IM_START] + encode(tok, "answer") + [300, IM_END]
    assert state.extensions_used == 3 and not state.capped
    assert state.thinking_tokens == len(thinking)
    assert state.finish_reason == "stop"


def test_end_of_turn_is_replaced_by_the_answer_delimiter(tokens, embedded):
    state = drive(tokens, BudgetForcing(max_answer_tokens=2), [100, IM_END, 300, IM_END], cap=50)
    assert state.output == [100] + encode(embedded[1], "<|im_start|>answer") + [300, IM_END]


def test_min_thinking_suppresses_every_early_end(tokens, embedded):
    forcing = BudgetForcing(max_thinking_tokens=50, min_thinking_tokens=6, max_answer_tokens=1)
    wait = encode(embedded[1], "Wait")
    state = drive(tokens, forcing, [100, IM_END, 101, IM_END, 102, 103, 104, IM_END, 300])
    assert state.extensions_used == 2
    assert state.thinking_tokens == 3 + 2 * len(wait) + 2
    assert state.thinking_tokens >= 6 and not state.capped


def test_cap_inside_an_extension_truncates_it(tokens, embedded):
    tok = embedded[1]
    ext = "Alternatively, let me reconsider"
    ext_ids = encode(tok, ext)
    assert len(ext_ids) > 3
    state = drive(
        tokens,
        BudgetForcing(max_thinking_tokens=4, num_ignore=1, extensions=(ext,), max_answer_tokens=1),
        [100, 101, IM_END, 300],
    )
    assert state.output[:4] == [100, 101] + ext_ids[:2]
    assert state.thinking_tokens == 4 and state.capped and state.extensions_used == 1


def test_thinking_never_exceeds_the_cap_whatever_the_model_does(tokens):
    forcing = BudgetForcing(max_thinking_tokens=7, num_ignore=100, extensions=("Wait, what",), max_answer_tokens=2)
    for script in ([IM_END] * 50, [IM_START, 5] * 25, [9] * 50):
        state = drive(tokens, forcing, script)
        assert state.thinking_tokens == 7 and state.capped


def test_forced_spans_mark_what_the_state_wrote(tokens, embedded):
    """Extensions, the forced end with its answer prefix, and a completed natural end are each one span."""
    tok = embedded[1]
    wait = encode(tok, "Wait")
    forcing = BudgetForcing(max_thinking_tokens=6 + len(wait), num_ignore=1, max_answer_tokens=2)  # 6 own + Wait
    state = drive(tokens, forcing, [100, 101, IM_END, 102, 103, 104, 105, 200, 201])
    spans = {kind: (start, end) for kind, start, end in state.forced_spans}
    assert spans["extension"] == (2, 2 + len(wait))
    assert state.output[slice(*spans["extension"])] == wait
    start, end = spans["forced_end"]
    assert start == state.thinking_end and state.output[start:end] == encode(tok, "\n<|im_start|>answer\nFinal Answer:")
    assert "delimiter" not in spans and state.output[end:] == [200, 201]

    natural = drive(tokens, BudgetForcing(max_answer_tokens=1), [100, IM_START, 300], cap=50)
    assert natural.forced_spans == [["delimiter", 2, 2 + len(tokens.think_end_ids) - 1]]
    assert natural.output[1] == IM_START  # the model's own token is not marked


def test_extensions_in_a_row_are_separate_spans(tokens, embedded):
    """A model that asks to stop right after an extension gets a second one: two spans, not one merged."""
    wait = encode(embedded[1], "Wait")
    state = drive(
        tokens,
        BudgetForcing(max_thinking_tokens=50, num_ignore=2, max_answer_tokens=1),
        [100, IM_END, IM_END, IM_END, 300],
        cap=50,
    )
    extensions = [span for span in state.forced_spans if span[0] == "extension"]
    assert state.extensions_used == 2 and len(extensions) == 2
    assert all(state.output[start:end] == wait for _, start, end in extensions)


def test_forced_offsets_are_character_offsets_into_the_output(embedded):
    """Eval stores spans as character offsets into the decoded output, also after multi-byte text."""
    from types import SimpleNamespace

    from s1.evaluate.runner import forced_offsets

    tok = embedded[1]
    before, wait, end = (
        encode(tok, "Größe 漢字 ok"),
        encode(tok, "Wait"),
        encode(tok, "\n<|im_start|>answer\nFinal Answer:"),
    )
    ids = before + wait + end + encode(tok, " 4")
    spans = [
        ["extension", len(before), len(before) + len(wait)],
        ["forced_end", len(before) + len(wait), len(before) + len(wait) + len(end)],
    ]
    output = tok.decode(ids, skip_special_tokens=False)
    offsets = forced_offsets(tok, SimpleNamespace(output_token_ids=ids, forced_spans=spans))
    assert [output[s:e] for _, s, e in offsets] == ["Wait", "\n<|im_start|>answer\nFinal Answer:"]


def test_step_conditional_thinking_ends_at_no_steps_left_and_streams_only_what_stays(embedded):
    """The paper's step-conditional model marks steps with `<|im_start|>{k} steps left`: those marks stay in
    the thinking; `<|im_start|>0` ends it, leaves the thinking (never streamed) and becomes the delimiter."""
    from s1.core.detokenize import ThinkingSplitter
    from s1.core.formats import S1_STEPS

    tokenizer = embedded[1]
    steps = FormatTokens.build(tokenizer, S1_STEPS)
    thought = "<|im_start|>2 steps left\nSeven eights.\n<|im_start|>1 steps left\nThat is 56.\n"
    script = iter(encode(tokenizer, thought + "<|im_start|>0") + encode(tokenizer, " 56") + [IM_END])
    state = new_state(Request("p", [1, 2, 3], BudgetForcing(max_answer_tokens=8), Sampling(), 200), steps)
    splitter, reasoning, content = ThinkingSplitter(tokenizer, steps), "", ""
    while not state.done:
        state.next_token(lambda: next(script))
        r, c, _ = splitter.update(state)
        reasoning, content = reasoning + r, content + c
    assert tokenizer.decode(state.output[: state.thinking_end]) == thought == reasoning
    assert tokenizer.decode(state.output[state.thinking_end :]).startswith("<|im_start|>answer")
    assert content.strip() == "56" and state.finish_reason == "stop"


# ------------------------------------------------------------------ the grace after the cap (issue 31)
DOT, NEWLINE, PLAIN = 30, 198, 100  # ".", "\n" and "t" in SmolLM2's vocabulary


def test_grace_tokens_are_named_by_the_tokenizer_text(tokens):
    assert tokens.text([DOT]) == "." and tokens.text([NEWLINE]) == "\n" and tokens.text([PLAIN]) == "t"
    assert tokens.ends_line(DOT) and tokens.ends_line(NEWLINE) and not tokens.ends_line(PLAIN)


def test_a_grace_ends_thinking_right_after_the_first_line_or_sentence_end_past_the_cap(tokens, embedded):
    forcing = BudgetForcing(max_thinking_tokens=3, thinking_grace_tokens=5, max_answer_tokens=1)
    state = drive(tokens, forcing, [PLAIN, DOT, PLAIN, PLAIN, PLAIN, DOT, 300, PLAIN])
    # a "." before the cap does not count; the one two tokens past it ends thinking there
    assert state.output[: state.thinking_end] == [PLAIN, DOT, PLAIN, PLAIN, PLAIN, DOT]
    assert (state.thinking_tokens, state.capped) == (6, True)
    forced = encode(embedded[1], "\n<|im_start|>answer\nFinal Answer:")
    assert state.output[6:] == forced + [300]
    newline = drive(tokens, forcing, [PLAIN] * 4 + [NEWLINE] + [PLAIN] * 10)
    after_newline = encode(embedded[1], "<|im_start|>answer\nFinal Answer:")  # the line's own newline is kept
    assert newline.thinking_tokens == 5 and newline.output[5 : 5 + len(after_newline)] == after_newline


def test_a_grace_that_runs_out_forces_the_end_at_cap_plus_grace_never_beyond(tokens):
    forcing = BudgetForcing(max_thinking_tokens=3, thinking_grace_tokens=4, max_answer_tokens=1)
    state = drive(tokens, forcing, [PLAIN] * 50)
    assert (state.thinking_tokens, state.capped, state.thinking_end) == (7, True, 7)
    for script in ([IM_END] * 50, [IM_START, 5] * 25, [9] * 50, [PLAIN, DOT] * 25):
        capped = drive(tokens, replace(forcing, num_ignore=100, extensions=("Wait, what",)), script)
        assert 3 <= capped.thinking_tokens <= 7


def test_a_cap_that_falls_on_a_line_end_uses_no_grace(tokens):
    forcing = BudgetForcing(max_thinking_tokens=3, thinking_grace_tokens=5, max_answer_tokens=1)
    state = drive(tokens, forcing, [PLAIN, PLAIN, DOT] + [PLAIN] * 10)
    assert (state.thinking_tokens, state.capped) == (3, True)


def test_an_end_of_thinking_inside_the_grace_is_a_natural_end_even_where_ends_are_ignored(tokens, embedded):
    forcing = BudgetForcing(max_thinking_tokens=3, thinking_grace_tokens=5, num_ignore=2, max_answer_tokens=1)
    state = drive(tokens, forcing, [PLAIN, IM_END, PLAIN, PLAIN, IM_END, 300])
    wait = encode(embedded[1], "Wait")
    # the end before the cap is ignored (Wait), as without a grace; the one in the grace ends thinking
    assert state.output[: state.thinking_end] == [PLAIN] + wait + [PLAIN, PLAIN]
    assert (state.capped, state.extensions_used) == (False, 1)
    assert state.output[state.thinking_end :] == encode(embedded[1], "<|im_start|>answer") + [300]


def test_forced_text_does_not_end_the_grace(tokens, embedded):
    """An extension's own "." is the state's text, not the model finishing its sentence."""
    ext = encode(embedded[1], "Wait.")
    forcing = BudgetForcing(
        max_thinking_tokens=1 + len(ext),
        thinking_grace_tokens=3,
        num_ignore=1,
        extensions=("Wait.",),
        max_answer_tokens=1,
    )
    state = drive(tokens, forcing, [PLAIN, IM_END, PLAIN, DOT, PLAIN, 300])
    assert state.output[: state.thinking_end] == [PLAIN] + ext + [PLAIN, DOT]


def test_grace_zero_is_no_grace(tokens):
    for script in ([PLAIN] * 30, [PLAIN, IM_END] * 15, [PLAIN, DOT, IM_START] * 10):
        a = drive(tokens, BudgetForcing(max_thinking_tokens=5, num_ignore=1, max_answer_tokens=3), script)
        b = drive(
            tokens,
            BudgetForcing(max_thinking_tokens=5, num_ignore=1, max_answer_tokens=3, thinking_grace_tokens=0),
            script,
        )
        assert (a.output, a.thinking_tokens, a.capped, a.forced_spans) == (
            b.output,
            b.thinking_tokens,
            b.capped,
            b.forced_spans,
        )


def test_the_re_prefill_rounds_end_at_the_cap_then_ask_through_the_grace_and_feed_stops_at_the_line_end(tokens):
    """A round ends at the cap (where a shared sweep's branch leaves its trunk, so the branch's calls are its
    setting's own), and the grace is a round of its own whose tokens past the line end are not taken."""
    forcing = BudgetForcing(max_thinking_tokens=3, thinking_grace_tokens=5, max_answer_tokens=1)
    state = new_state(Request("p", [1, 2, 3], forcing, Sampling(), 3), tokens)
    assert state.round()[0] == 3
    assert state.feed([PLAIN, PLAIN, PLAIN]) == 3
    assert state.round()[0] == 5
    assert state.feed([PLAIN, DOT, PLAIN, PLAIN, PLAIN]) == 2
    assert not state.needs_sample() and state.thinking_tokens == 5


def test_cap_zero_with_a_grace_is_still_no_thinking(tokens):
    """Cap 0 means no thinking: there is no line to finish, so a grace (a server default, say) adds none."""
    for script in ([PLAIN] * 20, [DOT] * 20):
        graced = drive(
            tokens, BudgetForcing(max_thinking_tokens=0, thinking_grace_tokens=5, max_answer_tokens=2), script
        )
        plain = drive(tokens, BudgetForcing(max_thinking_tokens=0, max_answer_tokens=2), script)
        assert graced.thinking_tokens == 0 and graced.output == plain.output
