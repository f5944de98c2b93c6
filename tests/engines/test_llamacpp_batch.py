"""llama.cpp continuous batching on the embedded GGUF: many sequences in one llama_batch, each with its
own KV stream and forcing state, joining and leaving a running batch, long prompts chunked."""

from __future__ import annotations

import threading

import pytest

from s1 import BudgetForcing, generate
from s1.core.errors import UserError
from s1.core.sampling import Sampling
from s1.engines.base import prepare_ids
from s1.engines.llamacpp import LlamaCppEngine
from tests.cli.test_cli import s1
from tests.serve.test_serve import chat, client_settings, reference, served

QUESTIONS = [
    "What is 7*8?",
    "Name three primes.",
    "Why is the sea salty?",
    "What is 12 squared?",
    "Spell 'cat' backwards.",
    "Is 91 prime?",
    "What is the capital of France?",
    "Count to five.",
]
SETTINGS = {
    "caps": BudgetForcing(max_thinking_tokens=24, max_answer_tokens=8),
    "num_ignore": BudgetForcing(max_thinking_tokens=48, num_ignore=2, extensions=("Wait", "Hmm"), max_answer_tokens=8),
    "min thinking": BudgetForcing(max_thinking_tokens=40, min_thinking_tokens=30, max_answer_tokens=8),
}


@pytest.fixture(scope="module")
def engine():
    return LlamaCppEngine.load("smollm2", parallel=4, ctx_size=4 * 2048, threads=2)


def alone(engine, questions, forcing, sampling=None):
    """Each question on its own, from empty cells: the ground truth a batched run must reproduce."""
    out = []
    for q in questions:
        engine.runtime.clear()
        out += generate([q], engine, forcing, sampling, batch_size=1)
    return out


@pytest.mark.parametrize("name", list(SETTINGS))
def test_batched_greedy_outputs_equal_each_sequence_run_alone(engine, name):
    forcing = SETTINGS[name]
    expected = alone(engine, QUESTIONS, forcing)
    if name != "caps":
        assert any(c.extensions_used for c in expected), "no extension was forced; the case proves nothing"
    # eight requests over four streams: rows finish at different steps and the waiting ones take their ids,
    # keeping whatever prefix of the chat template the stream's last prompt shares
    for batch_size in (4, 1):
        got = generate(QUESTIONS, engine, forcing, batch_size=batch_size)
        for a, b in zip(got, expected):
            assert a.output_token_ids == b.output_token_ids
            assert (a.thinking_tokens, a.extensions_used, a.capped, a.forced_spans) == (
                b.thinking_tokens,
                b.extensions_used,
                b.capped,
                b.forced_spans,
            )


def test_seeded_sampling_gives_the_same_text_in_any_batch(engine):
    forcing, sampling = SETTINGS["caps"], Sampling(temperature=0.8, top_p=0.9, seed=7)
    expected = alone(engine, QUESTIONS[:5], forcing, sampling)
    got = generate(QUESTIONS[:5], engine, forcing, sampling, batch_size=4)
    assert [c.output_token_ids for c in got] == [c.output_token_ids for c in expected]
    assert len({tuple(c.output_token_ids) for c in got}) > 1


def test_a_cancelled_sequence_leaves_and_frees_its_stream(engine):
    forcing = SETTINGS["caps"]
    expected = alone(engine, QUESTIONS[:3], forcing)
    requests = [r for r in _requests(engine, QUESTIONS[:3], forcing)]
    loop = engine.loop(2)
    for i, r in enumerate(requests[:2]):
        loop.add(i, r)
    loop.step()
    loop.step()
    assert loop.cancel(0) and not loop.cancel(0)
    loop.add(2, requests[2])  # takes the cancelled request's stream
    done = {}
    while loop.busy:
        for i, _, state, _ in loop.step():
            done[i] = list(state.output)
    assert sorted(done) == [1, 2] and not loop.failed
    assert done[1] == expected[1].output_token_ids and done[2] == expected[2].output_token_ids
    assert sorted(loop.free) == [0, 1]


def _requests(engine, questions, forcing):
    from s1.engines.base import make_request

    return [
        make_request(engine.tokenizer, engine.format_tokens, engine.context_length, q, forcing, Sampling())
        for q in questions
    ]


@pytest.mark.slow
def test_a_6500_token_prompt_joins_four_running_streams_in_chunks_between_their_steps():
    """Behaviour, counted in steps (how long a step takes is bench/stall.py's business, not a test's: on a
    loaded machine every step is slower): the long prompt is fed over many steps, at most BATCH_TOKENS a
    step, and in every one of them each running stream gets its next token."""
    from s1.engines.batching import BATCH_TOKENS

    engine = LlamaCppEngine.load("smollm2", parallel=5, ctx_size=5 * 8192)
    produced: list[int] = []
    loop = engine.loop(5, on_token=lambda i, token, state: produced.append(i))
    long_thinking = BudgetForcing(max_thinking_tokens=4000, min_thinking_tokens=4000, max_answer_tokens=4)
    for i, r in enumerate(_requests(engine, QUESTIONS[:4], long_thinking)):
        loop.add(i, r)
    counts = dict.fromkeys(range(4), 0)
    while min(counts.values()) < 5:
        produced.clear()
        loop.step()
        for i in produced:
            counts[i] += 1
    text_ids = engine.tokenizer.encode(" ".join(QUESTIONS) * 2, add_special_tokens=False)
    ids = (text_ids * (6500 // len(text_ids) + 1))[:6500]
    loop.add(
        99,
        prepare_ids(
            engine.format_tokens, engine.context_length, "long", ids, BudgetForcing(max_thinking_tokens=4), Sampling()
        ),
    )
    joining_steps = 0
    while 99 not in produced:
        produced.clear()
        fed_before = next((r.position for r in loop.rows if r.index == 99), 0)
        loop.step()
        fed = next((r.position for r in loop.rows if r.index == 99), len(ids)) - fed_before
        assert fed <= BATCH_TOKENS, f"one step fed {fed} prompt tokens"
        joining_steps += 1
        waited = set(range(4)) - set(produced)
        assert not waited, f"streams {sorted(waited)} got no token in step {joining_steps} while the long prompt joined"
    assert joining_steps >= 6500 // BATCH_TOKENS, f"the long prompt joined in {joining_steps} steps"
    for i in (0, 1, 2, 3, 99):
        loop.cancel(i)
    assert not loop.busy


def test_served_llamacpp_clients_run_together_and_each_gets_its_own_result(engine):
    """Eight clients at once, each with its own forcing settings, streaming or not, and one that hangs up."""
    questions = [f"Client {i}: what is {i} plus {i}?" for i in range(8)]
    with served(
        "--model",
        "smollm2",
        "--engine",
        "llamacpp",
        "--served-model-name",
        "tiny",
        "--parallel",
        "4",
        "--ctx-size",
        str(4 * 2048),
        "--threads",
        "2",
    ) as base:
        results, errors = {}, []

        def run(i: int) -> None:
            try:
                results[i] = chat(base, questions[i], client_settings(i), stream=i % 2 == 0)
            except Exception as exc:  # collected and reported below
                errors.append(f"client {i}: {exc!r}")

        def hang_up() -> None:
            import httpx

            body = {
                "messages": [{"role": "user", "content": "long"}],
                "stream": True,
                "max_thinking_tokens": 400,
                "min_thinking_tokens": 400,
                "max_tokens": 50,
            }
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as r:
                for n, _ in enumerate(r.iter_lines()):
                    if n > 6:
                        break

        threads = [threading.Thread(target=hang_up)] + [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    assert not errors, errors
    for i, got in results.items():
        engine.runtime.clear()
        want = reference(engine, questions[i], client_settings(i))
        assert (got["thinking"], got["answer"]) == (want.thinking, want.answer), f"client {i} got another result"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ctx_size": 0}, "--ctx-size must be a positive number"),
        ({"ctx_size": 8, "parallel": 1}, "context per sequence would be 8 tokens"),
        ({"threads": 0}, "--threads must be at least 1"),
        ({"parallel": 0}, "runs 1 to"),
        ({"parallel": 100_000}, "runs 1 to"),
    ],
)
def test_bad_llamacpp_settings_are_one_sentence(kwargs, message):
    with pytest.raises(UserError, match=message):
        LlamaCppEngine.load("smollm2", **kwargs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engine", "hf", "--ctx-size", "4096"], "--ctx-size is for --engine llamacpp"),
        (["--engine", "llamacpp", "--threads", "0"], "--threads must be at least 1"),
        (["--engine", "llamacpp", "--parallel", "0"], "--batch-size must be at least 1"),
        (["--engine", "llamacpp", "--ctx-size", "-5"], "--ctx-size must be a positive number"),
    ],
)
def test_bad_serve_flags_exit_with_one_sentence(args, message):
    run = s1("serve", "--model", "smollm2", "--port", "1", *args, timeout=120)
    assert run.returncode != 0 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_logprobs_prompt_logprobs_and_min_tokens_through_the_shared_loop(engine):
    from dataclasses import replace

    [plain] = _requests(engine, ["Say hi."], BudgetForcing(max_thinking_tokens=8, max_answer_tokens=6))
    scored = replace(plain, logprobs=2, prompt_logprobs=1)
    [c] = engine.generate([scored])
    assert len(c.logprobs) == len(c.output_token_ids)
    for logprob, top in c.logprobs:
        assert len(top) == 2 and logprob <= 0
    forced = {i for _, start, end in c.forced_spans for i in range(start, end)}
    assert forced and len(forced) < len(c.output_token_ids), "the case should mix forced and chosen tokens"
    for i, (token, (logprob, top)) in enumerate(zip(c.output_token_ids, c.logprobs)):
        if i not in forced:  # greedy: the chosen token is the most likely one
            assert logprob == pytest.approx(max(top.values())) and token in top
    assert c.prompt_logprobs[0] is None and len(c.prompt_logprobs) == len(c.prompt_token_ids)
    assert all(lp <= 0 and len(top) == 1 for lp, top in c.prompt_logprobs[1:])
    # min_tokens: an answer stop cannot end the answer before that many answer tokens
    [free] = engine.generate([replace(plain, forcing=BudgetForcing(max_thinking_tokens=8, max_answer_tokens=12))])
    [held] = engine.generate(
        [replace(plain, forcing=BudgetForcing(max_thinking_tokens=8, max_answer_tokens=12), min_tokens=10)]
    )
    assert free.answer_tokens < 10 <= held.answer_tokens


def test_trajectories_paused_after_each_step_and_resumed_equal_whole_runs(engine):
    from dataclasses import replace

    from s1.engines.base import StepRule, make_request
    from s1.evaluate.rewards import CallableReward
    from s1.evaluate.search import RebaseSettings, rebase

    forcing = SETTINGS["num_ignore"]
    expected = alone(engine, QUESTIONS[:3], forcing)
    requests = [
        make_request(engine.tokenizer, engine.format_tokens, engine.context_length, q, forcing, Sampling())
        for q in QUESTIONS[:3]
    ]
    nodes = engine.generate([replace(r, step=StepRule(max_tokens=0)) for r in requests], batch_size=4)
    steps = 0
    while paused := [i for i, n in enumerate(nodes) if n.finish_reason == "step"]:
        nexts = engine.generate(
            [replace(requests[i], resume=nodes[i].state, step=StepRule(max_tokens=7)) for i in paused], batch_size=4
        )
        for i, node in zip(paused, nexts):
            nodes[i] = node
        steps += 1
    assert steps > 3
    assert [n.output_token_ids for n in nodes] == [e.output_token_ids for e in expected]

    scorer = CallableReward(lambda q, s: [len(x) % 7 / 7 for x in s])
    result = rebase(
        engine,
        requests[0],
        QUESTIONS[0],
        scorer,
        RebaseSettings(width=4, step=StepRule(max_tokens=8)),
        lambda node, j: Sampling(1.0, seed=17 * (node or 0) + j),
        batch_size=4,
    )
    assert len(result.trajectories) == 4 and result.generated_tokens == sum(n["tokens"] for n in result.nodes)
