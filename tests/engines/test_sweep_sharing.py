"""A budget sweep that shares one trajectory per prompt gives every setting exactly the sample it gets alone."""

from __future__ import annotations

import pytest

from s1 import BudgetForcing, Sampling
from s1.engines.base import make_request, to_completion
from s1.engines.hf import HFEngine
from s1.evaluate.sharing import share

QUESTIONS = ["What is 7*8?", "Explain gravity to a child in two sentences."]
CAPS = [0, 8, 24, 60, None]
WAITS = [0, 1, 2]
TIMING = {"prefill_tokens", "shared_tokens", "separate_prefill_tokens"}
"""What says how a sample was computed, not what it is."""


def sweep(engine, sampling_of, max_answer_tokens: int = 6):
    return [
        make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            q,
            BudgetForcing(max_thinking_tokens=cap, num_ignore=k, max_answer_tokens=max_answer_tokens),
            sampling_of(i),
        )
        for i, q in enumerate(QUESTIONS)
        for cap in CAPS
        for k in WAITS
    ]


def described(completion) -> dict:
    return {k: v for k, v in completion.to_dict().items() if k not in TIMING}


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_shared_sweep_gives_each_setting_its_own_samples(tiny, sampled):
    engine = HFEngine(*tiny)

    def sampling_of(i):
        return Sampling(temperature=1.0, seed=100 + i) if sampled else Sampling()

    requests = sweep(engine, sampling_of)
    alone = engine.generate(requests, batch_size=8)
    shared_requests = share(requests)
    assert sum(r.follows is not None for r in shared_requests) == len(requests) - len(QUESTIONS)
    shared = engine.generate(shared_requests, batch_size=4)

    assert [described(c) for c in shared] == [described(c) for c in alone]
    # the sweep exercised what it claims: caps that end thinking, Waits, natural ends a smaller Wait accepts
    assert any(c.capped for c in alone) and any(not c.capped for c in alone)
    assert any(c.extensions_used == 2 for c in alone)
    assert len({tuple(c.output_token_ids) for c in alone}) > len(QUESTIONS) * 3
    generated = sum(len(c.output_token_ids) - c.shared_tokens for c in shared)
    assert generated < 0.6 * sum(len(c.output_token_ids) for c in alone)


@pytest.mark.slow
def test_a_branch_with_no_slot_to_fork_into_recomputes_its_prefix_and_still_matches(tiny):
    """Where the runtime has no slot past the batch (llama.cpp's streams), a branch waits for one and
    recomputes its prefix from its state, with the random stream it left with."""
    engine = HFEngine(*tiny)
    requests = sweep(engine, lambda i: Sampling(temperature=1.0, seed=7 + i))[:15]
    alone = engine.generate(requests, batch_size=8)
    loop = engine.loop(max_batch=2)
    loop.runtime.slots = 2  # as many slots as the batch, as llama.cpp has streams
    for i, request in enumerate(share(requests)):
        loop.add(i, request)
    results, widest = {}, 0
    while loop.busy:
        for i, request, state, row in loop.step():
            results[i] = to_completion(
                request, state, engine.tokenizer, engine.fmt, prefill_tokens=row.prefilled, shared_tokens=row.shared
            )
        assert not loop.failed
        widest = max(widest, len(loop.rows))
    assert widest <= 2
    assert any(c.prefill_tokens > len(c.prompt_token_ids) for c in results.values()), "no branch had to wait"
    assert [described(results[i]) for i in range(len(requests))] == [described(c) for c in alone]


def check_reprefill_sweep(engine, sampled: bool) -> None:
    """A cap x Wait sweep of one question through a re-prefill engine, alone and shared: the same samples,
    fewer prompt tokens sent, and the sweep exercised caps, Waits and ends a smaller Wait accepts."""

    def sampling_of(i):
        return Sampling(temperature=1.0, seed=300 + i) if sampled else Sampling()

    requests = sweep(engine, sampling_of)[:15]
    alone = engine.generate(requests, batch_size=8)
    shared_requests = share(requests)
    assert sum(r.follows is not None for r in shared_requests) == len(requests) - 1
    shared = engine.generate(shared_requests, batch_size=8)
    assert [described(c) for c in shared] == [described(c) for c in alone]
    assert sum(c.prompt_tokens_processed for c in shared) < sum(c.prompt_tokens_processed for c in alone)
    assert sum(c.shared_tokens for c in shared) > 0
    # what each sample says its setting costs alone is what it cost alone
    assert [c.prompt_tokens_alone for c in shared] == [c.prompt_tokens_processed for c in alone]
    assert [c.generated_tokens + c.shared_tokens for c in shared] == [c.generated_tokens for c in alone]
    assert any(c.capped for c in alone) and any(c.extensions_used == 2 for c in alone)
    assert len({tuple(c.output_token_ids) for c in alone}) > 3


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_the_reprefill_loop_shares_a_sweep_and_gives_the_same_samples(tiny, sampled):
    """Re-prefill: a follower makes no call until its budget parts from the trajectory; then its rounds
    continue that trajectory (prompt + shared output), as a server's prefix cache would serve. Seeded, each
    round's stream starts from the seed its call sends, so the branch's calls draw what the setting's own do."""
    from s1.engines.reprefill import ReprefillEngine

    check_reprefill_sweep(ReprefillEngine.from_model(*tiny), sampled)


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_the_remote_engine_against_s1_serve_shares_a_sweep(tiny_dir, sampled):
    """Through `--engine remote` against `s1 serve`: the same samples, fewer prompt tokens sent."""
    from s1.engines.remote import RemoteEngine
    from tests.serve.test_serve import served

    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "8") as base:
        check_reprefill_sweep(RemoteEngine.load(str(tiny_dir), [f"{base}/v1"], mode="ids"), sampled)


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_llamacpp_shares_a_sweep_with_the_same_samples(sampled):
    """llama.cpp forks a branch by copying the trunk's KV stream (whole copy, then cut to the branch point)."""
    from s1.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.load("smollm2", parallel=4, ctx_size=4 * 1024, threads=2)

    def sampling_of(i):
        return Sampling(temperature=1.0, seed=100 + i) if sampled else Sampling()

    requests = [
        make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            QUESTIONS[0],
            BudgetForcing(max_thinking_tokens=cap, num_ignore=k, max_answer_tokens=4),
            sampling_of(0),
        )
        for cap in (0, 6, 16)
        for k in (0, 1)
    ]
    alone = engine.generate(requests)
    shared_requests = share(requests)
    assert sum(r.follows is not None for r in shared_requests) == len(requests) - 1
    shared = engine.generate(shared_requests)
    assert [described(c) for c in shared] == [described(c) for c in alone]
    assert sum(c.shared_tokens for c in shared) > 0


@pytest.mark.slow
def test_a_penalized_sweep_shares_with_its_penalties(tiny):
    """A branch forked into a free slot penalizes repeats as its setting alone does (its counts made from the
    output it took over)."""
    engine = HFEngine(*tiny)
    penalized = Sampling(temperature=1.0, seed=5, repetition_penalty=1.5, frequency_penalty=0.7, presence_penalty=0.3)
    requests = sweep(engine, lambda i: penalized)
    alone = engine.generate(requests, batch_size=8)
    shared = engine.generate(share(requests), batch_size=4)
    assert [described(c) for c in shared] == [described(c) for c in alone]
    assert sum(c.shared_tokens for c in shared) > 0


def test_a_trunk_that_fails_at_admission_loses_none_of_its_followers(tiny):
    """A request that fails at admission (here: a prompt token outside the vocabulary) must not lose the
    requests that were to follow its trajectory: each goes on as a request of its own and is answered, here
    with the same failure, since followers share the prompt. Before, they were neither finished nor failed."""
    from dataclasses import replace

    engine = HFEngine(*tiny)
    requests = sweep(engine, lambda i: Sampling(temperature=1.0, seed=3 + i))[:3]  # one question, cap 0, Wait 0-2
    bad = [*requests[0].prompt_token_ids[:-1], engine.tokenizer.vocab_size + 5]
    followed = [replace(r, prompt_token_ids=bad) for r in share(requests)]
    assert [r.follows for r in followed] == [2, 2, None]
    loop = engine.loop(max_batch=4)
    for i, request in enumerate(followed):
        loop.add(i, request)
    finished = []
    while loop.busy:
        finished += loop.step()
    assert not finished
    assert sorted(i for i, _ in loop.failed) == [0, 1, 2], "followers were lost with the request they followed"
    assert all("outside the vocabulary" in str(exc) for _, exc in loop.failed)


@pytest.mark.slow
def test_a_text_mode_server_shares_only_the_settings_that_part_where_a_round_ends(tiny_dir):
    """Text mode re-tokenizes each reply, so a round cut at a smaller cap is not the first tokens of a longer
    round: only followers with the trajectory's own cap (a Wait sweep: they part where a round ended) share."""
    from s1.engines.remote import RemoteEngine
    from tests.serve.test_serve import served

    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "8") as base:
        engine = RemoteEngine.load(str(tiny_dir), [f"{base}/v1"], mode="text")
        assert not engine.backend.shares_rounds
        requests = sweep(engine, lambda i: Sampling(temperature=1.0, seed=9))[:15]
        alone = engine.generate(requests, batch_size=8)
        shared_requests = share(requests)
        shared = engine.generate(shared_requests, batch_size=8)
    assert [described(c) for c in shared] == [described(c) for c in alone]
    trunk = next(r for r in shared_requests if r.follows is None)
    same_cap = [c for r, c in zip(shared_requests, shared) if r.follows is not None and r.cap == trunk.cap]
    other_caps = [c for r, c in zip(shared_requests, shared) if r.cap != trunk.cap]
    assert sum(c.shared_tokens for c in same_cap) > 0 and all(c.shared_tokens == 0 for c in other_caps)
