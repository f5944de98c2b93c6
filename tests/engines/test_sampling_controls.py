"""top_k, min_p and vLLM's three penalties in every in-process engine: one sampler (engines/sampling.py) for the
in-flight engines, the same penalties inside transformers.generate for the reference engine, passed through by
the remote engine to the server it calls. Each control is held to what it must do to the output."""

from __future__ import annotations

from dataclasses import replace

import pytest

from s1 import BudgetForcing, generate
from s1.core.errors import UserError
from s1.core.sampling import Sampling
from s1.engines.base import make_request
from s1.engines.hf import HFEngine
from s1.engines.reprefill import ReprefillEngine

QUESTION = "List the numbers from one to ten, then say them again."
FORCING = BudgetForcing(max_thinking_tokens=24, max_answer_tokens=8)
PENALTIES = {
    "repetition_penalty": Sampling(repetition_penalty=1.6),
    "presence_penalty": Sampling(presence_penalty=2.0),
    "frequency_penalty": Sampling(frequency_penalty=1.5),
    "negative": Sampling(presence_penalty=-2.0, frequency_penalty=-1.0, repetition_penalty=0.7),
}
HOT = 30.0
"""The tiny random model's logits are far apart: only a high temperature makes its draws differ from greedy."""


@pytest.fixture(scope="module")
def hf(tiny):
    return HFEngine(*tiny, threads=1)


@pytest.fixture(scope="module")
def greedy(hf):
    return generate([QUESTION], hf, FORCING)[0].output_token_ids


def repeats(ids: list[int]) -> int:
    return len(ids) - len(set(ids))


@pytest.mark.parametrize("name", list(PENALTIES))
def test_penalties_are_the_same_in_the_in_flight_and_the_reference_driver(hf, tiny, greedy, name):
    """transformers.generate over re-prefill rounds (presence and frequency counting the output only, though
    each round resends it) gives the very tokens of the in-flight loop; the repetition penalty changes them."""
    penalized = generate([QUESTION], hf, FORCING, PENALTIES[name])[0].output_token_ids
    reference = generate([QUESTION], ReprefillEngine.from_model(*tiny), FORCING, PENALTIES[name])[0]
    assert reference.output_token_ids == penalized, name
    if name in ("repetition_penalty", "negative"):
        assert penalized != greedy


def test_top_k_1_and_min_p_1_sample_the_greedy_tokens(hf, greedy):
    """Only the most likely token is left: whatever the seed and temperature, the greedy output; without them
    the same seeds draw something else (so the filters did the work)."""
    for seed in range(3):
        hot = Sampling(temperature=HOT, seed=seed)
        for narrowed in (replace(hot, top_k=1), replace(hot, min_p=1.0), replace(hot, top_k=1, top_p=0.5)):
            assert generate([QUESTION], hf, FORCING, narrowed)[0].output_token_ids == greedy, narrowed
    drawn = [generate([QUESTION], hf, FORCING, Sampling(temperature=HOT, seed=s))[0].output_token_ids for s in range(3)]
    assert all(d != greedy for d in drawn)
    wide = [replace(Sampling(temperature=HOT, seed=s), top_k=-1, min_p=0.0) for s in range(3)]
    assert [generate([QUESTION], hf, FORCING, s)[0].output_token_ids for s in wide] == drawn, "-1 and 0 keep all"


def test_rows_with_different_controls_share_a_batch_without_mixing(hf):
    """Requests with different settings batched together each get what they get alone."""
    samplings = [Sampling(), *PENALTIES.values(), Sampling(temperature=HOT, top_k=5, min_p=0.1, seed=3)]
    requests = [
        make_request(hf.tokenizer, hf.format_tokens, hf.context_length, QUESTION, FORCING, s) for s in samplings
    ]
    together = [c.output_token_ids for c in hf.generate(requests, batch_size=len(requests))]
    alone = [hf.generate([r], batch_size=1)[0].output_token_ids for r in requests]
    assert together == alone


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_k", -2),
        ("top_k", 1.5),
        ("min_p", 1.5),
        ("min_p", float("nan")),
        ("repetition_penalty", 0),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("frequency_penalty", True),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_setting(field, value):
    with pytest.raises(UserError) as caught:
        Sampling(**{field: value})
    assert caught.value.settings == (field,) and str(caught.value).startswith(field)


@pytest.mark.slow
def test_the_remote_engine_passes_the_controls_to_its_server(tiny_dir, hf, greedy):
    """The remote engine against `s1 serve`: the repetition penalty covers prompt and output tokens, which
    re-prefill rounds send as the prompt, so its output is the in-process one exactly."""
    from s1.engines.remote import RemoteEngine
    from tests.serve.test_serve import served

    sampling = PENALTIES["repetition_penalty"]
    expected = generate([QUESTION], hf, FORCING, sampling)[0].output_token_ids
    with served("--model", str(tiny_dir), "--served-model-name", "tiny") as base:
        engine = RemoteEngine.load(str(tiny_dir), [f"{base}/v1"], mode="ids")
        assert generate([QUESTION], engine, FORCING)[0].output_token_ids == greedy
        assert generate([QUESTION], engine, FORCING, sampling)[0].output_token_ids == expected != greedy
        narrowed = Sampling(temperature=HOT, seed=2, top_k=1)
        assert generate([QUESTION], engine, FORCING, narrowed)[0].output_token_ids == greedy


@pytest.mark.slow
def test_llamacpp_penalties_make_a_repetitive_output_repeat_less():
    """The llama.cpp engine on the embedded GGUF (a real model, whose forced thinking loops on "Wait, what's
    that?"): the repetition and frequency penalties make it repeat less, top_k 1 at temperature 1 is greedy."""
    from s1.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.load("smollm2", parallel=1, ctx_size=1024, threads=2)
    forcing = BudgetForcing(max_thinking_tokens=20, min_thinking_tokens=20, max_answer_tokens=2)
    greedy = generate([QUESTION], engine, forcing)[0].output_token_ids
    assert repeats(greedy) >= 8, "the greedy output barely repeats itself; the case proves nothing"
    for name in ("repetition_penalty", "frequency_penalty"):
        penalized = generate([QUESTION], engine, forcing, PENALTIES[name])[0].output_token_ids
        assert repeats(penalized) < repeats(greedy), name
    narrowed = Sampling(temperature=1.0, seed=1, top_k=1)
    assert generate([QUESTION], engine, forcing, narrowed)[0].output_token_ids == greedy
