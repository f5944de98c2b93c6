"""Parallel scaling and REBASE: width allocation by hand, steps paused and resumed, forks that process no
prompt token twice, finished trajectories leaving the width, reward-model backends on tiny random models."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from s1 import BudgetForcing, Sampling, generate
from s1.core.errors import UserError
from s1.engines.base import StepRule, make_request
from s1.engines.hf import HFEngine
from s1.evaluate.rewards import CallableReward, ShepherdPRM, aggregate, load_reward_model, save_random_reward_model
from s1.evaluate.search import RebaseSettings, allocate, rebase, sample

QUESTION = "What is 7*8? Think step by step."


def _request(engine, forcing, question=QUESTION):
    return make_request(engine.tokenizer, engine.format_tokens, engine.context_length, question, forcing, Sampling(1.0))


def _seeded(node, j):
    return Sampling(temperature=1.0, seed=1000 * (node or 0) + j)


def test_width_allocation_matches_hand_computed_softmax_shares():
    # scores 0.9, 0.5, 0.1 at T = 0.2: exp(4.5), exp(2.5), exp(0.5) ∝ 1, 0.1353, 0.0183 -> shares of 7:
    # 6.069, 0.821, 0.111 -> floors 6, 0, 0; the one left goes to the largest remainder (0.821)
    assert allocate([0.9, 0.5, 0.1], 7, 0.2) == [6, 1, 0]
    # 0.3, 0.1 at T = 0.2: weights e^1.5, e^0.5 -> 0.731, 0.269 of 5 = 3.655, 1.345 -> 3, 1, then .655 wins
    assert allocate([0.3, 0.1], 5, 0.2) == [4, 1]
    # equal scores split evenly; a remainder goes to the earlier nodes
    assert allocate([0.5, 0.5, 0.5], 4, 0.2) == [2, 1, 1]
    # a high temperature flattens, a low one concentrates
    assert allocate([1.0, 0.0], 10, 100.0) == [5, 5]
    assert allocate([1.0, 0.0], 10, 0.01) == [10, 0]
    # a node without a score (NaN) gets nothing while others have one; nothing to give gives nothing
    assert allocate([float("nan"), 0.2], 3, 0.2) == [0, 3]
    assert allocate([0.4, 0.6], 0, 0.2) == [0, 0]
    for budget in range(0, 17):
        assert sum(allocate([0.11, 0.52, 0.33, 0.9], budget, 0.2)) == budget
    with pytest.raises(UserError, match="temperature"):
        allocate([0.1], 2, 0.0)


@pytest.mark.parametrize("kind", ["hf", "reprefill"])
def test_a_trajectory_paused_after_every_step_and_resumed_equals_one_run(tiny, tiny_dir, kind):
    from s1.engines import load_engine

    engine = HFEngine(*tiny) if kind == "hf" else load_engine(str(tiny_dir), "reprefill", "s1")
    forcing = BudgetForcing(max_thinking_tokens=70, num_ignore=2, max_answer_tokens=12)
    whole = generate(QUESTION, engine, forcing)[0]
    request = replace(_request(engine, forcing), sampling=Sampling())
    node = engine.generate([replace(request, step=StepRule(max_tokens=0))])[0]
    assert node.finish_reason == "step" and node.output_token_ids == []
    assert node.prefill_tokens == (len(request.prompt_token_ids) if kind == "hf" else 0)  # re-prefill: nothing sent yet
    fed, lengths = [], []
    while node.finish_reason == "step":
        node = engine.generate([replace(request, resume=node.state, step=StepRule(max_tokens=9))])[0]
        fed.append(node.prefill_tokens)
        lengths.append(len(node.output_token_ids))
    assert node.output_token_ids == whole.output_token_ids
    assert (node.thinking_tokens, node.extensions_used, node.capped) == (
        whole.thinking_tokens,
        whole.extensions_used,
        whole.capped,
    )
    assert len(fed) > 3 and all(b - a <= 9 for a, b in zip([0] + lengths, lengths[:-1])), "a step ran past its tokens"
    if kind == "hf":
        assert fed == [0] * len(fed), "a resumed step processed again what its parent had processed"
    else:  # each round resends prompt and path
        assert all(f >= len(request.prompt_token_ids) for f in fed)


def test_a_step_ends_after_the_delimiter(embedded):
    engine = HFEngine(*embedded)
    forcing = BudgetForcing(max_thinking_tokens=300, max_answer_tokens=8)
    request = _request(engine, forcing, "List three prime numbers, one per paragraph, then explain each.")
    root = engine.generate([replace(request, step=StepRule(max_tokens=0))])[0]
    steps = engine.generate(
        [
            replace(request, resume=root.state, step=StepRule("\n\n", 200), sampling=Sampling(1.0, seed=s))
            for s in range(6)
        ]
    )
    ended = [c for c in steps if c.finish_reason == "step" and len(c.output_token_ids) < 200]
    assert ended, "no step ended at a blank line"
    for c in ended:
        text = engine.tokenizer.decode(c.output_token_ids, skip_special_tokens=False)
        assert "\n\n" in engine.tokenizer.decode(c.output_token_ids[-2:], skip_special_tokens=False) or text.endswith(
            "\n\n"
        )
        assert text.rpartition("\n\n")[0].strip()
        assert "\n\n" not in engine.tokenizer.decode(c.output_token_ids[:-1], skip_special_tokens=False).strip()


def test_rebase_processes_no_prompt_token_twice_and_finished_trajectories_leave_the_width(tiny, monkeypatch):
    from s1.engines.hf import HFRuntime

    fed = []
    forward = HFRuntime.forward
    monkeypatch.setattr(
        HFRuntime, "forward", lambda self, runs: fed.append(sum(len(r[2]) for r in runs)) or forward(self, runs)
    )
    engine = HFEngine(*tiny)
    forcing = BudgetForcing(max_thinking_tokens=48, max_answer_tokens=6)
    request = _request(engine, forcing)
    scorer = CallableReward(lambda q, steps: [((len(s) * 37) % 100) / 100 for s in steps])
    settings = RebaseSettings(width=6, step=StepRule(max_tokens=6), max_depth=20)
    result = rebase(engine, request, QUESTION, scorer, settings, _seeded)

    assert result.prefill_tokens == len(request.prompt_token_ids), "a node processed tokens its parent had processed"
    # every token the model was fed: the prompt once, then each generated token once (a finished
    # trajectory's last token is never fed)
    assert sum(fed) == len(request.prompt_token_ids) + result.generated_tokens - len(result.trajectories)
    nodes = result.nodes
    assert len(result.trajectories) == 6 and all(nodes[t.node]["finished"] for t in result.trajectories)
    assert result.generated_tokens == sum(n["tokens"] for n in nodes)
    for depth in range(1, max(n["depth"] for n in nodes)):
        finished = sum(1 for n in nodes if n["finished"] and n["depth"] <= depth)
        given = sum(n["children"] for n in nodes if n["depth"] == depth)
        live = [n for n in nodes if n["depth"] == depth and not n["finished"]]
        if finished >= 6 or not live:
            assert given == 0
            break
        assert given == 6 - finished, f"depth {depth}: {given} children for a width of 6 with {finished} finished"
        assert [n["children"] for n in live] == allocate([n["score"] for n in live], 6 - finished, 0.2)
    assert any(n["finished"] and n["depth"] > 1 for n in nodes) and any(
        n["finished"] and n["depth"] == 1 for n in nodes
    ), "the test needs trajectories finishing at different depths"

    # the same search with forking switched off: each child processes prompt and path again, same tree
    plain = HFEngine(*tiny)
    plain.paused.max_bytes = 0
    again = rebase(plain, request, QUESTION, scorer, settings, _seeded)
    assert [n["text"] for n in again.nodes] == [n["text"] for n in nodes]
    assert again.prefill_tokens > 3 * result.prefill_tokens


def test_parallel_trajectories_share_one_processed_prompt_and_are_scored(tiny):
    engine = HFEngine(*tiny)
    request = _request(engine, BudgetForcing(max_thinking_tokens=20, max_answer_tokens=5))
    scorer = CallableReward(lambda q, steps: len(steps[-1]) / 100)
    result = sample(engine, request, QUESTION, [Sampling(1.0, seed=s) for s in range(5)], reward=scorer)
    assert result.prefill_tokens == result.root_prefill == len(request.prompt_token_ids)
    assert all(t.reward is not None and t.reward_tokens == 0 for t in result.trajectories)
    assert [t.reward for t in result.trajectories] == [
        len(t.answer.strip()) / 100 if t.answer.strip() else t.reward for t in result.trajectories
    ]
    assert len({t.output for t in result.trajectories}) > 1
    assert result.generated_tokens == sum(t.generated_tokens for t in result.trajectories)


@pytest.fixture(scope="module")
def reward_dirs(embedded, tmp_path_factory):
    root = tmp_path_factory.mktemp("rewards")
    return {kind: save_random_reward_model(embedded[1], root / kind, kind) for kind in ("prm", "orm", "shepherd")}


def test_reward_model_backends_score_each_step(reward_dirs):
    steps = ["Seven times eight", "is fifty-six", "56"]
    prm = load_reward_model(reward_dirs["prm"])
    [scored] = prm.score([(QUESTION, steps)])
    assert type(prm).__name__ == "TokenClassPRM" and len(scored.steps) == 3 and all(0 < s < 1 for s in scored.steps)
    assert scored.tokens > 10
    # a prefix's step scores are the same as the full solution's (a causal model reads each at its tag)
    [prefix] = prm.score([(QUESTION, steps[:2])])
    assert prefix.steps == pytest.approx(scored.steps[:2], abs=1e-5)

    orm = load_reward_model(reward_dirs["orm"])
    [whole] = orm.score([(QUESTION, steps)])
    assert type(orm).__name__ == "OutcomeRM" and all(math.isnan(s) for s in whole.steps[:2]) and 0 < whole.steps[2] < 1
    assert aggregate(whole.steps, "min") == whole.steps[2]

    shepherd = load_reward_model(reward_dirs["shepherd"], step_tag="\n\n")
    [good] = shepherd.score([(QUESTION, steps)])
    assert type(shepherd).__name__ == "ShepherdPRM" and len(good.steps) == 3 and all(0 < s < 1 for s in good.steps)


def test_bad_reward_model_values_are_one_sentence(reward_dirs, tmp_path):
    cases = [
        ("", "is empty"),
        (str(tmp_path), "holds no config.json"),
        ("no_such_module_xyz:f", "Cannot load the reward function"),
        ("json:__version__", "not callable"),
        ("nothing-here", "neither a directory"),
    ]
    for spec, message in cases:
        with pytest.raises(UserError, match=message):
            load_reward_model(spec)
    with pytest.raises(UserError, match="reward-kind"):
        load_reward_model(reward_dirs["prm"], kind="sideways")
    # a causal LM read as a token classifier would score with a random head: refused, not silently noisy
    with pytest.raises(UserError, match="no trained weights"):
        load_reward_model(reward_dirs["shepherd"], kind="prm")
    remote_code = tmp_path / "qwen-prm"
    remote_code.mkdir()
    (remote_code / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForProcessRewardModel"]}))
    with pytest.raises(UserError, match="serve it with vLLM"):
        load_reward_model(str(remote_code))
    with pytest.raises(UserError, match="one token"):
        ShepherdPRM(reward_dirs["shepherd"], "\n\n", good="a good step", bad="-")
    with pytest.raises(UserError, match="returned 1 scores for 2 steps"):
        CallableReward(lambda q, s: [0.5]).score([("q", ["a", "b"])])
    with pytest.raises(UserError, match="aggregate"):
        aggregate([0.1], "median")
    for bad in (dict(width=0), dict(max_depth=0), dict(softmax_temperature=0.0), dict(step=StepRule(max_tokens=0))):
        with pytest.raises(UserError):
            RebaseSettings(**bad)
    with pytest.raises(UserError, match="delimiter"):
        StepRule("")


def test_eval_searches_three_math500_problems_beside_budget_forcing(tiny_dir, reward_dirs, data_dir, tmp_path):
    from s1.evaluate.config import EvalConfig
    from tests.evaluate.test_evaluate import evaluate

    out = tmp_path / "run"
    common = dict(
        benchmarks=["math500"],
        data_dir=str(data_dir),
        limit=3,
        model=str(tiny_dir),
        max_thinking_tokens=[24],
        max_answer_tokens=8,
        temperature=1.0,
        seed=0,
        reward_model=reward_dirs["prm"],
        widths=[4],
        max_step_tokens=6,
        samples=4,
    )
    config = EvalConfig(methods=["budget_forcing", "rebase", "best_of_n", "majority", "weighted_majority"], **common)
    summary = evaluate(config, str(out), show_progress=False)
    rows = summary["benchmarks"]["math500"]["settings"]
    labels = {(r["method"], r["setting"]) for r in rows}
    assert ("rebase", "width=4 cap=24 wait=0") in labels
    assert {("majority", f"n={n} cap=24 wait=0") for n in (1, 2, 4)} <= labels
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    searched = [r for r in records if r["method"] in ("rebase", "best_of_n", "majority", "weighted_majority")]
    assert len(searched) == 4 * 3
    for r in searched:
        assert r["points"] and r["generated_tokens"] > 0 and r["grader"]
        if r["method"] == "rebase":
            assert r["tree"][0]["parent"] is None and len(r["trajectories"]) == 4 and r["reward_tokens"] > 0
        if r["method"] == "majority":
            assert r["points"]["4"]["reward_tokens"] == 0
    # parallel methods drew their trajectories once per problem and only chose differently
    by = {(r["id"], r["method"]): r for r in searched}
    for pid in {r["id"] for r in searched}:
        outs = [
            [t["output"] for t in by[(pid, m)]["trajectories"]] for m in ("best_of_n", "majority", "weighted_majority")
        ]
        assert outs[0] == outs[1] == outs[2]
    compute = (out / "summary.md").read_text()
    assert "reward-model tokens / problem" in compute and (out / "scaling.png").stat().st_size > 10_000

    # a second run resumes: nothing is generated again, the summary is the same
    again = evaluate(config, str(out), show_progress=False)
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(records)
    assert again["benchmarks"] == summary["benchmarks"]
    # a smaller draw in the same directory adds no second n=1, n=2 row: the larger draw's points stand
    smaller = evaluate(EvalConfig(methods=["majority"], **{**common, "samples": 2}), str(out), show_progress=False)
    keys = [(r["method"], r["setting"]) for r in smaller["benchmarks"]["math500"]["settings"]]
    assert len(keys) == len(set(keys))
    kept = {r["setting"]: r for r in smaller["benchmarks"]["math500"]["settings"] if r["method"] == "majority"}
    assert kept["n=2 cap=24 wait=0"]["draw"] == 4


def test_bad_search_values_are_one_sentence(tiny_dir):
    from s1.evaluate.config import EvalConfig

    cases = [
        (dict(methods=["best_of_n"]), "needs a reward model"),
        (dict(methods=["rebase"], reward_model="x:y", widths=[0]), "--width"),
        (dict(methods=["rebase"], reward_model="x:y", max_step_tokens=0), "max-step-tokens"),
        (dict(methods=["rebase"], reward_model="x:y", rebase_temperature=-1.0), "temperature"),
        (dict(methods=["rebase"], reward_model="x:y", rebase_vote="loudest"), "rebase-vote"),
        (dict(methods=["majority"], reward_aggregate="median"), "reward-aggregate"),
        (dict(methods=["majority"], plot_tokens="wall"), "plot-tokens"),
    ]
    for values, message in cases:
        with pytest.raises(UserError, match=message):
            EvalConfig(model=str(tiny_dir), **values).settings()


def test_a_served_reward_model_scores_as_in_process_and_refuses_bad_bodies(tiny_dir, reward_dirs):
    import httpx

    from tests.serve.test_serve import served

    steps = [["Seven times eight", "is fifty-six", "56"], ["It is 54."]]
    local = load_reward_model(reward_dirs["prm"], step_tag="\n\n")
    with served("--model", str(tiny_dir), "--reward-model", reward_dirs["prm"], "--step-tag", "\\n\\n") as base:
        remote = load_reward_model(base + "/v1")
        got = remote.score([(QUESTION, s) for s in steps])
        want = local.score([(QUESTION, s) for s in steps])
        for g, w in zip(got, want):
            assert g.steps == pytest.approx(w.steps, abs=1e-5) and g.tokens == w.tokens > 0
        text = httpx.post(
            f"{base}/pooling", json={"input": QUESTION + "\n\nSeven times eight\n\nis 56\n\n"}, timeout=60
        ).json()
        assert [v[1] for v in text["data"][0]["data"]] == pytest.approx(
            local.score([(QUESTION, ["Seven times eight", "is 56"])])[0].steps, abs=1e-5
        )
        bad = [
            ({}, "either `input`"),
            ({"input": "q\n\na\n\n", "messages": [{"role": "user", "content": "q"}]}, "either `input`"),
            ({"input": []}, "1 to 256"),
            ({"input": "a question without steps"}, "no steps"),
            ({"messages": [{"role": "user", "content": "q"}]}, "assistant turn"),
            ({"input": "q\n\na\n\n", "encoding_format": "base64"}, "encoding_format"),
            ({"input": "q\n\na\n\n", "dimensions": 4}, "Unsupported field"),
            ({"input": 5}, "input"),
        ]
        for body, message in bad:
            r = httpx.post(f"{base}/pooling", json=body, timeout=60)
            assert r.status_code == 400 and message in r.json()["error"]["message"], (body, r.text)
        # the server still scores after the bad requests
        assert remote.score([(QUESTION, steps[1])])[0].steps == pytest.approx(want[1].steps, abs=1e-5)


def test_votes_by_hand():
    from s1.evaluate.metrics import best_of, weighted_vote

    # classes a a b b c with rewards .1 .1 .9 .05 .3: sums a .2, b .95, c .3 -> b's first sample
    assert weighted_vote([0, 0, 1, 1, 2], [0.1, 0.1, 0.9, 0.05, 0.3]) == 2
    # a tie in sums goes to the class seen first; samples without an answer never win
    assert weighted_vote([None, 0, 1], [5.0, 0.5, 0.5]) == 1
    assert weighted_vote([None, None], [1.0, 2.0]) is None
    assert best_of([0.2, float("nan"), 0.7, 0.7]) == 2 and best_of([None, float("nan")]) is None


def test_parallel_trajectories_through_re_prefill_send_the_prompt_each(tiny_dir):
    from s1.engines import load_engine

    engine = load_engine(str(tiny_dir), "reprefill", "s1")
    request = _request(engine, BudgetForcing(max_thinking_tokens=12, max_answer_tokens=4))
    result = sample(engine, request, QUESTION, [Sampling(1.0, seed=s) for s in range(3)])
    # each trajectory's rounds send prompt and output so far: at least the prompt per trajectory
    assert result.root_prefill == 0 and result.prefill_tokens == sum(t.prefill_tokens for t in result.trajectories)
    assert all(t.prefill_tokens >= len(request.prompt_token_ids) for t in result.trajectories)
    assert len(result.trajectories) == 3 and result.generated_tokens == sum(
        t.generated_tokens for t in result.trajectories
    )


def test_a_killed_search_resumes_at_problem_granularity(tmp_path, tiny_dir, reward_dirs, data_dir):
    import signal
    import subprocess
    import sys
    import time

    from tests.cli.test_cli import s1

    out = tmp_path / "run"
    args = [
        "eval",
        "--model",
        str(tiny_dir),
        "--benchmark",
        "math500",
        "--data-dir",
        str(data_dir),
        "--limit",
        "8",
        "--method",
        "rebase,majority",
        "--samples",
        "4",
        "--width",
        "4",
        "--reward-model",
        reward_dirs["prm"],
        "--max-thinking-tokens",
        "40",
        "--max-step-tokens",
        "6",
        "--max-answer-tokens",
        "6",
        "--seed",
        "3",
        "--output",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(__import__("os").environ, HF_HUB_OFFLINE="1"),
    )
    samples = out / "samples.jsonl"
    deadline = time.time() + 240
    while (
        time.time() < deadline
        and proc.poll() is None
        and not (samples.exists() and len(samples.read_text().splitlines()) >= 2)
    ):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; the test proves nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = samples.read_text().splitlines()
    assert 2 <= len(before) < 16
    run = s1(*args)
    assert run.returncode == 0, run.stderr
    after = samples.read_text().splitlines()
    identities = [json.loads(line)["identity"] for line in after]
    assert len(identities) == len(set(identities)) == 16, "a problem's search was recorded twice or is missing"
    assert after[: len(before)] == before


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--method", "rebase", "--reward-model", "x:y", "--width", "four"], "--width takes whole numbers"),
        (["--method", "rebase", "--reward-model", "x:y", "--width", "0"], "--width"),
        (["--method", "rebase", "--reward-model", "x:y", "--step-delimiter", ""], "delimiter"),
        (["--method", "best_of_n"], "needs a reward model"),
        (["--method", "best_of_n", "--reward-model", "/no/such/dir"], "neither a directory"),
        (["--method", "majority", "--samples", "0"], "--samples must be at least 1"),
    ],
)
def test_bad_search_flags_exit_with_one_sentence(flags, message, tiny_dir, data_dir, tmp_path):
    from tests.cli.test_cli import s1

    run = s1(
        "eval",
        "--model",
        str(tiny_dir),
        "--benchmark",
        "math500",
        "--data-dir",
        str(data_dir),
        "--limit",
        "1",
        "--output",
        str(tmp_path / "run"),
        *flags,
    )
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.slow
def test_done_when_rebase_and_parallel_methods_on_three_math500_problems_with_the_embedded_model(
    reward_dirs, data_dir, tmp_path
):
    from tests.cli.test_cli import s1

    out = tmp_path / "run"
    common = [
        "--model",
        "smollm2",
        "--benchmark",
        "math500",
        "--data-dir",
        str(data_dir),
        "--limit",
        "3",
        "--reward-model",
        reward_dirs["prm"],
        "--max-thinking-tokens",
        "20",
        "--max-answer-tokens",
        "6",
        "--seed",
        "0",
        "--output",
        str(out),
    ]
    for method in (
        ["--method", "rebase", "--width", "8", "--max-step-tokens", "8"],
        ["--method", "best_of_n,majority", "--samples", "8"],
        ["--method", "budget_forcing"],
    ):
        run = s1("eval", *common, *method, timeout=600)
        assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["benchmarks"]["math500"]["settings"]
    assert {r["method"] for r in rows} == {"budget_forcing", "rebase", "best_of_n", "majority"}
    assert all(r["problems"] == 3 for r in rows)
    rebase_row = next(r for r in rows if r["method"] == "rebase")
    # the prompt is processed once per problem (a fresh process: nothing kept from before)
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for r in records:
        if r["method"] == "rebase":
            assert r["prefill_tokens"] == r["root_prefill"] > 50 and len(r["trajectories"]) == 8
            assert sum(n["tokens"] for n in r["tree"]) == r["generated_tokens"]
    assert rebase_row["mean_reward_tokens"] > 0 and (out / "scaling.png").exists()
    assert "| rebase | width=8 cap=20 wait=0 |" in (out / "summary.md").read_text()


def test_a_step_ends_where_its_delimiter_is_completed_after_text(tiny):
    from s1.core.forcing import ForcingState
    from s1.core.formats import FormatTokens, get_format

    tokens = FormatTokens.build(tiny[1], get_format("s1"))
    encode = lambda text: tiny[1].encode(text, add_special_tokens=False)  # noqa: E731

    def first_end(text: str, rule: StepRule) -> str | None:
        """Feed `text` token by token; the text of the step when the rule ends it (None: it never does)."""
        state = ForcingState(BudgetForcing(), tokens, cap=10_000, last_token=0)
        for token in encode(text):
            state.output.append(token)
            state.thinking_tokens += 1
            if rule.ended(state, 0, tokens.text):
                return tokens.text(state.output)
        return None

    blank = StepRule("\n\n", 200)
    assert first_end("Seven times eight.\n\nIt is 56.", blank) == "Seven times eight.\n\n"
    # a blank line before any text does not end the step; the one after the text does
    assert first_end("\n\nSeven\n\nSevenSevenSeven\n\n", blank) == "\n\nSeven\n\n"
    # a delimiter of several tokens ends the step once its last token is in
    marker = StepRule("<step_end>", 200)
    assert len(encode("<step_end>")) > 1
    assert first_end("First a.<step_end>Then b.<step_end>", marker) == "First a.<step_end>"
    assert first_end("no delimiter here at all", blank) is None
    assert first_end("one two three four five six", StepRule("\n\n", 3)) is not None
    assert StepRule("\n\n", 0).ended(ForcingState(BudgetForcing(), tokens, cap=0, last_token=0), 0, tokens.text)


def test_a_search_at_cap_zero_pauses_its_root_before_any_token(tiny):
    engine = HFEngine(*tiny)
    request = _request(engine, BudgetForcing(max_thinking_tokens=0, max_answer_tokens=5))
    result = sample(engine, request, QUESTION, [Sampling(1.0, seed=s) for s in range(3)])
    assert result.root_prefill == result.prefill_tokens == len(request.prompt_token_ids)
    assert result.generated_tokens == sum(t.generated_tokens for t in result.trajectories)
    assert all(t.thinking_tokens == 0 for t in result.trajectories)


def test_rebase_grows_the_same_tree_when_held_caches_are_evicted(tiny):
    """A budget of a few bytes keeps only the latest paused cache: the others' children fork a shorter
    prefix (a cousin's, the prompt) or none, and process the rest; the tree stays the same."""
    forcing = BudgetForcing(max_thinking_tokens=40, max_answer_tokens=5)
    scorer = CallableReward(lambda q, steps: [((len(s) * 31) % 100) / 100 for s in steps])
    settings = RebaseSettings(width=5, step=StepRule(max_tokens=5), max_depth=10)
    trees = []
    for budget in (None, 1):
        engine = HFEngine(*tiny)
        if budget is not None:
            engine.paused.max_bytes = budget
        result = rebase(engine, _request(engine, forcing), QUESTION, scorer, settings, _seeded)
        trees.append((result, [(n["parent"], n["text"], n["children"]) for n in result.nodes]))
    assert trees[0][1] == trees[1][1]
    assert trees[1][0].prefill_tokens > trees[0][0].prefill_tokens
