"""The thinking grace (`BudgetForcing.thinking_grace_tokens`) on real engines: after the cap, thinking ends
right after the first of the model's tokens that ends a line or sentence, or at cap + grace, never beyond;
the in-flight loop and the re-prefill driver agree token for token (greedy), a shared sweep gives each
graced setting the sample it gets alone, and the grace only appends to what the cap alone gives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from s1 import BudgetForcing, Sampling, generate
from s1.core.formats import FormatTokens
from s1.engines.base import make_request
from s1.engines.hf import HFEngine
from s1.engines.reprefill import ReprefillEngine
from s1.evaluate.sharing import share
from tests.engines.test_sweep_sharing import described

QUESTIONS = [
    "What is 7*8?",
    "Write the first ten prime numbers and explain how you found each of them.",
    "Why is the sky blue? Answer briefly, please.",
]
CAP, GRACE = 24, 16
GRACED = BudgetForcing(
    max_thinking_tokens=CAP, thinking_grace_tokens=GRACE, min_thinking_tokens=20, max_answer_tokens=6
)
"""SmolLM2 ends its thinking at once under s1's format; a minimum keeps it writing (with Waits) up to the cap."""


def check_grace(completion, tokens: FormatTokens, cap: int, grace: int) -> str:
    """Where this completion's thinking ended, checked against the grace's rule: "line" (right after the first
    line or sentence end at or past the cap), "ran out" (cap + grace), "natural" or "before the cap"."""
    out, n = completion.prompt_token_ids[-1:] + completion.output_token_ids, completion.thinking_tokens
    grace = 0 if cap == 0 else grace  # cap 0 is no thinking: no line to finish
    assert n <= cap + grace
    if not completion.capped:
        return "natural" if n >= cap else "before the cap"
    assert n >= cap
    ends = [i for i in range(max(cap, 1), n + 1) if tokens.ends_line(out[i], out[i - 1])]  # out[0]: the prompt's
    if ends:
        assert ends[0] == n, "thinking went on past a line end in the grace"
        return "line"
    assert n == cap + grace
    return "ran out"


@pytest.fixture(scope="module")
def hf_embedded(embedded):
    return HFEngine(*embedded)


def test_both_drivers_end_the_grace_at_the_same_line_end(embedded, hf_embedded):
    model, tokenizer = embedded
    inflight = generate(QUESTIONS, hf_embedded, GRACED, batch_size=3)
    reference = generate(QUESTIONS, ReprefillEngine.from_model(model, tokenizer), GRACED, batch_size=3)
    kinds = []
    assert sum(a.capped for a in inflight) >= 2
    for a, b in zip(inflight, reference):
        assert a.output_token_ids == b.output_token_ids
        assert (a.thinking_tokens, a.capped, a.finish_reason) == (b.thinking_tokens, b.capped, b.finish_reason)
        kinds.append(check_grace(a, hf_embedded.format_tokens, CAP, GRACE))
    assert "line" in kinds, f"no thinking ended at a line end inside the grace ({kinds}); the test proves nothing"


def test_the_grace_only_appends_to_what_the_cap_alone_gives(hf_embedded):
    capped = generate(QUESTIONS, hf_embedded, replace(GRACED, thinking_grace_tokens=0), batch_size=3)
    graced = generate(QUESTIONS, hf_embedded, GRACED, batch_size=3)
    for a, b in zip(capped, graced):
        if a.capped:  # thinking that reached the cap goes on through the grace from the same tokens
            assert a.thinking_tokens == CAP and b.thinking_tokens >= CAP
            assert b.output_token_ids[:CAP] == a.output_token_ids[:CAP]
        else:  # thinking that ended before the cap never meets the grace
            assert b.output_token_ids == a.output_token_ids
    assert any(b.thinking_tokens > CAP for b in graced)


def test_llamacpp_ends_the_grace_by_the_same_rule(hf_embedded):
    """llama.cpp runs the embedded model from its GGUF, whose greedy text differs from transformers' (other
    kernels and weights' precision), so the engines are held to the rule, not to each other's tokens: each
    completion ends where the rule says, and the grace only appends to what the cap alone gives."""
    from s1.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.load("smollm2", parallel=4, ctx_size=4 * 256, threads=2)
    settings = [(cap, grace) for cap in (6, 14) for grace in (0, 8)]
    requests = [
        make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            q,
            BudgetForcing(max_thinking_tokens=cap, thinking_grace_tokens=grace, num_ignore=3, max_answer_tokens=2),
            Sampling(),
        )
        for cap, grace in settings
        for q in QUESTIONS
    ]
    done = engine.generate(requests, batch_size=4)
    by_setting = {s: done[i * len(QUESTIONS) : (i + 1) * len(QUESTIONS)] for i, s in enumerate(settings)}
    kinds = []
    for cap in (6, 14):
        for alone, graced in zip(by_setting[cap, 0], by_setting[cap, 8]):
            kinds.append(check_grace(graced, engine.format_tokens, cap, 8))
            assert check_grace(alone, engine.format_tokens, cap, 0) in ("line", "ran out", "natural", "before the cap")
            if alone.capped:
                assert alone.thinking_tokens == cap
                assert graced.output_token_ids[:cap] == alone.output_token_ids[:cap]
    assert {"line", "ran out"} <= set(kinds), kinds
    assert any(k == "line" and c.thinking_tokens > 6 for k, c in zip(kinds, by_setting[6, 8])), kinds


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_a_shared_sweep_with_a_grace_gives_each_setting_its_own_sample(embedded, hf_embedded, sampled):
    engine = hf_embedded
    requests = [
        make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            q,
            BudgetForcing(max_thinking_tokens=cap, num_ignore=k, thinking_grace_tokens=12, max_answer_tokens=3),
            Sampling(temperature=1.0, seed=7 + i) if sampled else Sampling(),
        )
        for i, q in enumerate(QUESTIONS[:2])
        for cap in (0, 8, 20, 40)
        for k in (0, 1)
    ]
    alone = engine.generate(requests, batch_size=8)
    shared_requests = share(requests)
    # cap 0 is no thinking and so carries no grace: its two requests per question are a tree of their own
    assert sum(r.follows is not None for r in shared_requests) == len(requests) - 4
    shared = engine.generate(shared_requests, batch_size=4)
    assert [described(c) for c in shared] == [described(c) for c in alone]
    kinds = [check_grace(c, engine.format_tokens, r.cap, 12) for c, r in zip(alone, requests)]
    assert "line" in kinds and sum(c.shared_tokens for c in shared) > 0
    # the re-prefill driver forks a branch at its cap too, where its setting alone ends a round, and continues
    # its grace alone: greedy, the in-flight samples; seeded, its own per-round streams run one by one
    reprefill = ReprefillEngine.from_model(*embedded)
    followed = reprefill.generate(shared_requests, batch_size=8)
    reference = reprefill.generate(requests, batch_size=8) if sampled else alone
    assert [c.output_token_ids for c in followed] == [c.output_token_ids for c in reference]
    assert sum(c.shared_tokens for c in followed) > 0
