"""In-flight forcing and s1's re-prefill loop must produce the same tokens under greedy decoding.

The re-prefill loop runs each round through plain `transformers.generate`; the in-flight engine runs
its own batched loop. Mixed prompt lengths make the batches left-padded and rows finish at different
times, so splicing and cutting rows is exercised too.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from s1 import S1, BudgetForcing, generate
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
    "rotating": BudgetForcing(
        max_thinking_tokens=120, num_ignore=4, extensions=("Wait", "Hmm", "Alternatively"), max_answer_tokens=16
    ),
    "cap inside extension": BudgetForcing(
        max_thinking_tokens=23,
        num_ignore=6,
        extensions=("Wait, let me double check this carefully",),
        max_answer_tokens=8,
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
    """At most 64 thinking tokens: on this model every ignored end and rotation of the 120-token settings
    already happens by then (4 and 2 extensions rotating, 3 with a natural end for num_ignore 3), at half
    the CPU time."""
    forcing = SETTINGS[name]
    forcing = replace(forcing, max_thinking_tokens=min(forcing.max_thinking_tokens, 64))
    _compare(*embedded, forcing)


def test_done_when_example_is_capped_at_twenty(embedded):
    """The issue's acceptance example: 20 thinking tokens, capped, equal to s1's loop."""
    forcing = BudgetForcing(max_thinking_tokens=20, num_ignore=5)
    model, tokenizer = embedded
    [a] = generate("What is 7*8?", HFEngine(model, tokenizer), forcing)
    [b] = generate("What is 7*8?", ReprefillEngine.from_model(model, tokenizer), forcing)
    assert a.thinking_tokens == 20 and a.capped
    assert a.output_token_ids == b.output_token_ids


def s1_original_loop(model, tokenizer, prompt_ids: list[int], forcing: BudgetForcing) -> list[int]:
    """An independent, literal port of s1's budget-forcing script (README of simplescaling/s1), on token ids.

    generate until an end-of-thinking token or the remaining budget; while Waits are left, strip the stop
    token, append "Wait" and generate again; at the cap append the delimiter and "Final Answer:"; else
    complete the delimiter; then generate the answer. Two documented differences (docs/design.md, README.md):
    extension tokens count toward the cap, and no `min_tokens=1` after an extension. Shares no code with
    `ForcingState` or the re-prefill driver: it exists to catch a shared misreading of the method.
    """
    import torch
    from transformers import GenerationConfig

    from s1.core.formats import FormatTokens

    ft = FormatTokens.build(tokenizer, S1)
    stops = sorted(ft.end_trigger_ids)

    def gen(ids, max_new, stop_ids):
        config = GenerationConfig(
            max_new_tokens=max_new, do_sample=False, eos_token_id=stop_ids, pad_token_id=stop_ids[0]
        )
        saved, model.generation_config = model.generation_config, GenerationConfig()
        try:
            with torch.no_grad():
                out = model.generate(
                    input_ids=torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    generation_config=config,
                )[0, len(ids) :].tolist()
        finally:
            model.generation_config = saved
        for j, t in enumerate(out):
            if t in stop_ids:
                return out[: j + 1]
        return out

    thinking: list[int] = []
    o = gen(prompt_ids, forcing.max_thinking_tokens, stops)
    for _ in range(forcing.num_ignore):
        if not o or o[-1] not in stops:
            break  # the budget ran out, no attempt to stop to ignore
        thinking += o[:-1]
        remaining = forcing.max_thinking_tokens - len(thinking)
        wait = list(tokenizer.encode(forcing.extensions[0], add_special_tokens=False))[:remaining]
        thinking += wait
        remaining -= len(wait)
        o = gen(prompt_ids + thinking, remaining, stops) if remaining > 0 else []
    if o and o[-1] in stops:
        thinking += o[:-1]
        stop = o[-1]
        ending = ([stop] + list(ft.think_end_ids[1:])) if stop == ft.think_end_ids[0] else list(ft.think_end_ids)
    else:
        thinking += o
        last = thinking[-1] if thinking else prompt_ids[-1]
        newline = "" if tokenizer.decode([last]).endswith("\n") else "\n"
        ending = list(
            tokenizer.encode(
                newline + S1.think_end + S1.answer_separator + forcing.answer_prefix, add_special_tokens=False
            )
        )
    out = thinking + ending
    return out + gen(prompt_ids + out, forcing.max_answer_tokens, sorted(ft.answer_stop_ids))


ORACLE = {
    "cap only": BudgetForcing(max_thinking_tokens=40, max_answer_tokens=12),
    "num_ignore 2": BudgetForcing(max_thinking_tokens=120, num_ignore=2, max_answer_tokens=12),
    "cap inside extension": BudgetForcing(
        max_thinking_tokens=23, num_ignore=6, extensions=("Wait, let me double check",), max_answer_tokens=8
    ),
}


@pytest.mark.parametrize("name", list(ORACLE))
def test_both_drivers_match_s1_original_loop_on_tiny_model(tiny, name):
    model, tokenizer = tiny
    forcing = ORACLE[name]
    inflight = generate(QUESTIONS, HFEngine(model, tokenizer), forcing, batch_size=4)
    reprefill = generate(QUESTIONS, ReprefillEngine.from_model(model, tokenizer), forcing, batch_size=4)
    for a, b in zip(inflight, reprefill):
        want = s1_original_loop(model, tokenizer, a.prompt_token_ids, forcing)
        assert a.output_token_ids == want == b.output_token_ids


def test_both_drivers_match_s1_original_loop_on_embedded_model(embedded):
    model, tokenizer = embedded
    forcing = BudgetForcing(max_thinking_tokens=20, num_ignore=5, max_answer_tokens=12)
    [a] = generate("What is 7*8?", HFEngine(model, tokenizer), forcing)
    [b] = generate("What is 7*8?", ReprefillEngine.from_model(model, tokenizer), forcing)
    assert a.output_token_ids == s1_original_loop(model, tokenizer, a.prompt_token_ids, forcing) == b.output_token_ids


def test_reference_backend_ignores_the_checkpoint_generation_config(tiny):
    """A repetition penalty in the checkpoint's generation_config must not leak into the reference."""
    model, tokenizer = tiny
    forcing = BudgetForcing(max_thinking_tokens=40, num_ignore=1, max_answer_tokens=8)
    saved = model.generation_config.repetition_penalty
    model.generation_config.repetition_penalty = 1.5
    try:
        [a] = generate(QUESTIONS[1], HFEngine(model, tokenizer), forcing)
        [b] = generate(QUESTIONS[1], ReprefillEngine.from_model(model, tokenizer), forcing)
    finally:
        model.generation_config.repetition_penalty = saved
    assert a.output_token_ids == b.output_token_ids
