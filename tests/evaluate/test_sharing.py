"""`s1 eval` with a shared sweep: the same records as each setting run on its own, and resume that keeps them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from s1 import BudgetForcing, Sampling
from s1.engines.base import Request
from s1.engines.hf import HFEngine
from s1.evaluate.config import EvalConfig
from s1.evaluate.runner import run_eval
from s1.evaluate.sharing import share
from tests.evaluate.test_evaluate import lines, s1

HOW = {"seconds", "prefill_tokens", "shared_tokens", "separate_prefill_tokens"}
"""Fields that say how a sample was computed (its cost, its time), not what it is."""


@pytest.fixture
def problems_file(tmp_path, data_dir):
    """Six real MATH500 problems as a generic JSONL file."""
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()[:6]]
    path = tmp_path / "six.jsonl"
    path.write_text(
        "".join(json.dumps({"id": r["unique_id"], "problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows)
    )
    return path


def records(run_dir) -> dict[str, dict]:
    """The run's records by identity, without the fields that say how they were computed."""
    return {r["identity"]: {k: v for k, v in r.items() if k not in HOW} for r in lines(run_dir)}


def request(cap: int, wait: int, prompt=(1, 2, 3), sampling=Sampling(), **forcing) -> Request:
    forcing = BudgetForcing(max_thinking_tokens=cap, num_ignore=wait, **forcing)
    return Request("q", list(prompt), forcing, sampling, cap)


def test_who_follows_whom():
    grid = [request(c, k) for c in (8, 16, 32) for k in (0, 1, 2)]
    assert [r.follows for r in share(grid)] == [8] * 8 + [None], "the largest cap and Wait count thinks for all"
    # neither covers the other: both think; one that both cover follows the one with more Waits
    assert [r.follows for r in share([request(32, 0), request(8, 2), request(8, 0)])] == [None, None, 1]
    # another prompt, sampling, forcing value, or draw never shares
    assert [r.follows for r in share([request(32, 1), request(8, 0, prompt=(1, 2))])] == [None, None]
    assert [r.follows for r in share([request(32, 1), request(8, 0, sampling=Sampling(1.0, seed=3))])] == [None] * 2
    assert [r.follows for r in share([request(32, 1), request(8, 0, max_answer_tokens=9)])] == [None, None]
    unseeded = [request(32, 1, sampling=Sampling(1.0)), request(8, 0, sampling=Sampling(1.0))]
    assert [r.follows for r in share(unseeded, draws=[("p", 0), ("p", 1)])] == [None, None]
    assert [r.follows for r in share(unseeded, draws=[("p", 0), ("p", 0)])] == [None, 0]


@pytest.mark.slow
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_a_shared_sweep_records_what_each_setting_records_alone(tmp_path, tiny, problems_file, sampled):
    engine = HFEngine(*tiny)
    config = EvalConfig(
        data=str(problems_file),
        model="tiny",
        limit=2,
        max_thinking_tokens=[0, 16, 48],
        num_ignore=[0, 1, 2],
        max_answer_tokens=6,
        batch_size=4,
        **({"temperature": 1.0, "seed": 7, "samples": 2} if sampled else {}),
    )
    assert config.share_sweep, "sharing is the default"
    run_eval(config, str(tmp_path / "shared"), engine=engine, show_progress=False)
    separate_config = EvalConfig(**{**vars(config), "share_sweep": False})
    run_eval(separate_config, str(tmp_path / "separate"), engine=engine, show_progress=False)

    shared, separate = records(tmp_path / "shared"), records(tmp_path / "separate")
    assert len(shared) == 2 * 9 * (2 if sampled else 1)
    assert shared == separate
    assert "cap=0 wait=0" in {r["setting"] for r in shared.values()}  # cap 0 is not "no cap"
    assert sum(r["shared_tokens"] for r in lines(tmp_path / "shared")) > 0
    assert sum(r["shared_tokens"] for r in lines(tmp_path / "separate")) == 0

    # compute: what the shared run spent, and what it says running alone costs, which the separate run spent
    def compute(run: str) -> tuple[dict, dict]:
        summary = json.loads((tmp_path / run / "summary.json").read_text())["benchmarks"]["six"]
        return summary["compute"], {r["setting"]: r["compute"] for r in summary["settings"]}

    (run, rows), (alone_run, alone_rows) = compute("shared"), compute("separate")
    took_over = sum(r["shared_tokens"] for r in lines(tmp_path / "shared")) / 2
    assert run["generated"] == run["generated_alone"] - took_over < 0.7 * run["generated_alone"]
    assert run["prompt"] < run["prompt_alone"]
    assert run["generated_alone"] == alone_run["generated"] == alone_run["generated_alone"]
    assert all(rows[s]["generated_alone"] == alone_rows[s]["generated"] for s in rows)
    assert rows["cap=48 wait=2"]["generated"] == rows["cap=48 wait=2"]["generated_alone"], "the trunk thinks itself"
    assert all(r["generated"] <= r["generated_alone"] for r in rows.values())
    assert run["generated"] == pytest.approx(sum(r["generated"] for r in rows.values()))
    assert run["generated"] * 2 == sum(r["output_tokens"] - r["shared_tokens"] for r in lines(tmp_path / "shared"))
    from s1.evaluate.records import parse_summary
    from s1.report.markdown import summary_markdown

    table = summary_markdown(parse_summary((tmp_path / "shared" / "summary.json").read_text()))
    assert "generated tokens / problem: with sharing | without |" in table
    assert f"| run | all settings | {run['generated']:.0f} | {run['generated_alone']:.0f} |" in table


@pytest.mark.slow
def test_a_shared_sweep_killed_mid_problem_resumes_to_the_same_records(tmp_path, tiny_dir, problems_file):
    args = [
        "eval",
        "--model",
        str(tiny_dir),
        "--data",
        str(problems_file),
        "--limit",
        "4",
        "--max-thinking-tokens",
        "8,24,48",
        "--num-ignore",
        "0,2",
        "--max-answer-tokens",
        "8",
        "--batch-size",
        "2",
    ]
    settings = 6
    whole = s1(*args, "--output", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", *args, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    samples = out / "samples.jsonl"

    def partial_problem() -> bool:
        """Some problem has some of its settings recorded and not all: the kill lands mid-problem."""
        if not samples.exists():
            return False
        done = Counter(json.loads(line)["id"] for line in samples.read_text().splitlines() if line.endswith("}"))
        return any(0 < n < settings for n in done.values())

    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not partial_problem():
            time.sleep(0.02)
        assert proc.poll() is None and partial_problem(), "the run was never caught mid-problem"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = samples.read_text().splitlines()
    resumed = s1(*args, "--output", str(out))
    assert resumed.returncode == 0, resumed.stderr
    after = samples.read_text().splitlines()
    assert after[: len(before)] == before, "finished samples were rewritten"
    identities = [json.loads(line)["identity"] for line in after]
    assert len(identities) == len(set(identities)) == 4 * settings, "a sample was lost or duplicated"
    assert records(out) == records(tmp_path / "whole")
