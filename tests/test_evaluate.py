"""`s1 eval` / `s1 report`: run directories, resume after a kill, methods, parallel sampling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from s1 import UserError
from s1.engines.hf import HFEngine
from s1.evaluate import EvalConfig, run_eval
from s1.report import compare


def s1(*args, **kwargs):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "s1", *args], capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.fixture
def problems_file(tmp_path, data_dir):
    """Twelve real MATH500 problems as a generic JSONL file."""
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()[:12]]
    path = tmp_path / "twelve.jsonl"
    path.write_text("".join(json.dumps({"id": r["unique_id"], "problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_done_when_run_directory_is_complete(tmp_path, data_dir, embedded):
    out = tmp_path / "run"
    run = s1("eval", "--model", "smollm2", "--benchmark", "math500", "--limit", "5", "--max-thinking-tokens", "32,64",
             "--num-ignore", "0,1", "--data-dir", str(data_dir), "--output", str(out), "--max-answer-tokens", "64")
    assert run.returncode == 0, run.stderr
    assert {p.name for p in out.iterdir()} >= {"config.json", "samples.jsonl", "summary.json", "summary.md", "scaling.png"}
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 5 * 4
    for r in records:
        assert {"id", "method", "setting", "prompt", "output", "thinking_tokens", "extracted", "correct", "reason", "seconds"} <= set(r)
        cap = 32 if "cap=32" in r["setting"] else 64
        assert r["thinking_tokens"] <= cap
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["benchmarks"]["math500"]["settings"]
    assert [r["setting"] for r in rows] == ["cap=32 wait=0", "cap=32 wait=1", "cap=64 wait=0", "cap=64 wait=1"]
    assert summary["benchmarks"]["math500"]["methods"]["budget_forcing"]["control"] == 100.0
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "| budget_forcing | cap=64 wait=1 |" in (out / "summary.md").read_text()
    assert json.loads((out / "config.json").read_text())["max_thinking_tokens"] == [32, 64]


def test_killed_run_resumes_with_exactly_one_record_per_sample(tmp_path, tiny_dir, problems_file):
    out = tmp_path / "run"
    args = ["eval", "--model", str(tiny_dir), "--data", str(problems_file), "--max-thinking-tokens", "24,48",
            "--max-answer-tokens", "8", "--batch-size", "2", "--output", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "s1", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    samples = out / "samples.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and len(samples.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; the test proves nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = samples.read_text().splitlines()
    assert 5 <= len(before) < 24
    with samples.open("a") as f:  # a crash in the middle of a write leaves a torn line
        f.write('{"benchmark": "twelve", "id": "torn')
    run = s1(*args)
    assert run.returncode == 0, run.stderr
    lines = samples.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    keys = [(r["id"], r["setting"], r["sample"]) for r in records]
    assert len(keys) == len(set(keys)) == 24
    assert lines[: len(before)] == before, "finished samples were rewritten"


def test_baseline_methods_and_their_control(tmp_path, tiny, problems_file):
    config = EvalConfig(
        data=str(problems_file), limit=3, model="tiny", max_thinking_tokens=[16, 32], max_answer_tokens=4,
        methods=["budget_forcing", "token_conditional", "token_conditional+bf", "step_conditional+bf",
                 "class_conditional", "rejection_sampling"],
        tokens_per_step=8, max_tries=3, seed=0,
    )
    summary = run_eval(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)
    bench = summary["benchmarks"]["twelve"]
    labels = {(r["method"], r["setting"]) for r in bench["settings"]}
    assert ("token_conditional", "tokens=16") in labels and ("step_conditional+bf", "steps=4") in labels
    assert ("class_conditional", "short") in labels and ("class_conditional", "long") in labels
    assert bench["methods"]["budget_forcing"]["control"] == 100.0
    assert bench["methods"]["token_conditional+bf"]["control"] == 100.0
    assert bench["methods"]["class_conditional"]["control"] is None  # no length was asked for
    records = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    tcc = [r for r in records if r["method"] == "token_conditional" and r["setting"] == "tokens=16"]
    assert all("Think for up to 16 tokens." in r["prompt"] for r in tcc)
    rejection = [r for r in records if r["method"] == "rejection_sampling"]
    assert rejection and all(1 <= r["tries"] <= 3 for r in rejection)
    assert all(r["thinking_tokens"] <= 16 for r in rejection if r["fits"] and r["setting"] == "tokens=16")


def test_parallel_samples_report_majority_and_pass_at_k(tmp_path, tiny, problems_file):
    config = EvalConfig(data=str(problems_file), limit=2, max_thinking_tokens=[16], max_answer_tokens=4,
                        samples=3, temperature=1.0, seed=1)
    summary = run_eval(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)
    [row] = summary["benchmarks"]["twelve"]["settings"]
    assert row["samples"] == 6 and set(row["maj@k"]) == {1, 2, 3}
    passes = [row["pass@k"][k] for k in (1, 2, 3)]
    assert passes == sorted(passes)
    assert "maj@3" in (tmp_path / "run" / "summary.md").read_text()


def test_resume_refuses_a_different_model_or_decoding(tmp_path, tiny, problems_file):
    config = EvalConfig(data=str(problems_file), limit=1, max_thinking_tokens=[8], max_answer_tokens=2)
    run_eval(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)
    config.temperature = 0.7
    with pytest.raises(UserError, match="different temperature"):
        run_eval(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)


def test_greedy_with_many_samples_is_refused():
    with pytest.raises(UserError, match="--temperature above 0"):
        EvalConfig(samples=4).settings()


def test_report_puts_runs_side_by_side(tmp_path, tiny, problems_file):
    for name, caps in (("a", [8, 16]), ("b", [16])):
        config = EvalConfig(data=str(problems_file), limit=2, max_thinking_tokens=caps, max_answer_tokens=2)
        run_eval(config, str(tmp_path / name), engine=HFEngine(*tiny), show_progress=False)
    text = compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "both.png")
    assert "| twelve | budget_forcing | cap=16 | " in text
    header = text.splitlines()[0]
    assert header.endswith("| a | b |")
    assert "cap=8 | " in text and "| – |" in text  # b has no cap=8 point
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    run = s1("report", str(tmp_path / "nothing"))
    assert run.returncode == 1 and "no summary.json" in run.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--max-thinking-tokens", "12,abc"], "takes whole numbers"),
        (["--method", "magic"], "Unknown method"),
        (["--benchmark", "nope"], "Unknown benchmark"),
        (["--method", "token_conditional"], "needs token budgets"),
        (["--samples", "3"], "--temperature above 0"),
        (["--max-thinking-tokens", "-4"], "max_thinking_tokens must be a positive"),
    ],
)
def test_bad_eval_input_is_one_sentence(args, words, data_dir, tmp_path):
    run = s1("eval", "--data-dir", str(data_dir), "--output", str(tmp_path / "r"), *args)
    assert run.returncode == 1
    assert words in run.stderr and "Traceback" not in run.stderr
