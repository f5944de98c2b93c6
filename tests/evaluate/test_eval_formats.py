"""`s1 eval` over the paper's other ways to run a model: no thinking at all, and the precision it ran in."""

from __future__ import annotations

import json

import pytest

from s1 import UserError
from s1.engines.hf import HFEngine
from s1.evaluate.config import EvalConfig, context_hash
from s1.evaluate.runner import run_eval
from tests.evaluate.test_evaluate import lines, problems_file  # noqa: F401 (a fixture)


def test_the_no_thinking_method_answers_with_no_thinking_block(tmp_path, tiny, problems_file):  # noqa: F811
    config = EvalConfig(
        benchmarks=[],
        data=str(problems_file),
        limit=2,
        methods=["no_thinking", "budget_forcing"],
        max_thinking_tokens=[8],
        max_answer_tokens=6,
    )
    summary = run_eval(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)
    samples = lines(tmp_path / "run")
    plain = [s for s in samples if s["method"] == "no_thinking"]
    forced = [s for s in samples if s["method"] == "budget_forcing"]
    assert len(plain) == len(forced) == 2
    assert all("<|im_start|>think" not in s["prompt"] and s["prompt"].endswith("assistant\n") for s in plain)
    assert all(s["thinking_tokens"] == 0 and s["setting"] == "no thinking" for s in plain)
    assert all("<|im_start|>think" in s["prompt"] for s in forced)
    rows = [row for bench in summary.to_json()["benchmarks"].values() for row in bench["settings"]]
    assert {row["method"] for row in rows} == {"no_thinking", "budget_forcing"}


def test_eval_runs_in_the_precision_asked_for(tmp_path, tiny_dir, problems_file):  # noqa: F811
    """The paper evaluated in float32: --dtype float32 is honoured, and a precision other than auto is part
    of each sample's identity (auto keeps the identities older run directories were written with)."""
    base = dict(benchmarks=[], data=str(problems_file), limit=1, model=str(tiny_dir), max_thinking_tokens=[4])
    auto, f32 = EvalConfig(**base), EvalConfig(**base, dtype="float32")
    assert context_hash(auto) != context_hash(f32)
    assert "dtype" not in auto.context()
    run_eval(f32, str(tmp_path / "run"), show_progress=False)
    [history] = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert "float32" in json.dumps(history)
    with pytest.raises(UserError, match="dtype"):
        EvalConfig(**base, dtype="float8").settings()


def test_no_thinking_votes_by_samples_and_as_a_parallel_method(tmp_path, tiny, problems_file):  # noqa: F811
    """The paper's Figure 4b baseline, an instruct model's majority vote without thinking: `no_thinking` with
    --samples N gives maj@k, and majority+no_thinking draws N plain answers per problem (n = 1, 2, 4 of them),
    never sharing a draw with the thinking majority of the same run."""
    config = EvalConfig(
        benchmarks=[],
        data=str(problems_file),
        limit=2,
        methods=["no_thinking", "majority", "majority+no_thinking"],
        max_thinking_tokens=[8],
        max_answer_tokens=4,
        samples=4,
        temperature=1.0,
    )
    summary = run_eval(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False).to_json()
    rows = {(r["method"], r["setting"]): r for r in summary["benchmarks"]["twelve"]["settings"]}
    assert set(rows) == {
        ("no_thinking", "no thinking"),
        *(("majority", f"n={n} cap=8 wait=0") for n in (1, 2, 4)),
        *(("majority+no_thinking", f"n={n} no thinking") for n in (1, 2, 4)),
    }
    assert set(rows[("no_thinking", "no thinking")]["maj@k"]) == {1, 2, 3, 4}
    records = lines(tmp_path / "run")
    plain = [r for r in records if r["method"] == "majority+no_thinking"]
    thought = [r for r in records if r["method"] == "majority"]
    assert len(plain) == len(thought) == 2
    assert all("<|im_start|>think" not in r["prompt"] and r["prompt"].endswith("assistant\n") for r in plain)
    assert all(t["thinking_tokens"] == 0 and t["answer_tokens"] <= 4 for r in plain for t in r["trajectories"])
    assert all(len(r["trajectories"]) == 4 for r in plain)
    assert all(r["setting_spec"]["forcing"]["max_thinking_tokens"] is None for r in plain), "caps are not theirs"
    assert all("<|im_start|>think" in r["prompt"] for r in thought)
    # x position: the answers' tokens, summed over the n trajectories
    assert rows[("majority+no_thinking", "n=4 no thinking")]["mean_thinking_tokens"] == sum(
        t["generated_tokens"] for r in plain for t in r["trajectories"]
    ) / len(plain)


@pytest.mark.parametrize(
    "methods, fmt, words",
    [
        (["rebase+no_thinking"], "s1", "rebase searches over steps of thinking, so it has no form without thinking"),
        (["rebase"], "none", "rebase searches over steps of thinking and --format none opens no thinking"),
        (["budget_forcing+no_thinking"], "s1", "budget_forcing sets how long the model thinks, so it has no form"),
    ],
)
def test_no_thinking_refuses_the_search_over_thinking_steps(methods, fmt, words):
    config = EvalConfig(methods=methods, format=fmt, reward_model="x:y", widths=[2])
    with pytest.raises(UserError, match=words):
        config.settings()
