"""`s1 eval` / `s1 report`: run identity and resume, locking, kills, methods, metrics, parallel sampling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from s1 import UserError
from s1.engines.hf import HFEngine
from s1.evaluate.config import EvalConfig
from s1.evaluate.runner import run_eval
from s1.report.compare import compare
from s1.report.run_report import write_run_report


def s1(*args, **kwargs):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "s1", *args], capture_output=True, text=True, env=env, timeout=600, **kwargs
    )


def evaluate(config: EvalConfig, output, **kwargs) -> dict:
    """`s1 eval` as its command runs it: the evaluation, then report/ draws summary.md and scaling.png; the
    summary as summary.json holds it."""
    summary = run_eval(config, str(output), **kwargs)
    write_run_report(output, summary)
    return summary.to_json()


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def descendants(pid: int) -> set[int]:
    """Every live process below pid, from /proc (the grader worker is a child of the eval process)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def problems_file(tmp_path, data_dir):
    """Twelve real MATH500 problems as a generic JSONL file."""
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()[:12]]
    path = tmp_path / "twelve.jsonl"
    path.write_text(
        "".join(json.dumps({"id": r["unique_id"], "problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows)
    )
    return path


@pytest.mark.slow
def test_done_when_run_directory_is_complete(tmp_path, data_dir, embedded):
    out = tmp_path / "run"
    run = s1(
        "eval",
        "--model",
        "smollm2",
        "--benchmark",
        "math500",
        "--limit",
        "5",
        "--max-thinking-tokens",
        "32,64",
        "--num-ignore",
        "0,1",
        "--data-dir",
        str(data_dir),
        "--output",
        str(out),
        "--max-answer-tokens",
        "64",
    )
    assert run.returncode == 0, run.stderr
    assert {p.name for p in out.iterdir()} >= {
        "history.jsonl",
        "samples.jsonl",
        "summary.json",
        "summary.md",
        "scaling.png",
    }
    records = lines(out)
    assert len(records) == 5 * 4
    for r in records:
        assert {
            "identity",
            "id",
            "method",
            "setting",
            "prompt",
            "output",
            "thinking_tokens",
            "extracted",
            "correct",
            "reason",
            "seconds",
        } <= set(r)
        cap = 32 if "cap=32" in r["setting"] else 64
        assert r["thinking_tokens"] <= cap
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["benchmarks"]["math500"]["settings"]
    assert [r["setting"] for r in rows] == ["cap=32 wait=0", "cap=32 wait=1", "cap=64 wait=0", "cap=64 wait=1"]
    assert summary["benchmarks"]["math500"]["methods"]["budget_forcing"]["control"] == 100.0
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "| budget_forcing | cap=64 wait=1 |" in (out / "summary.md").read_text()
    [history] = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history["config"]["max_thinking_tokens"] == [32, 64]


def test_each_identity_field_regenerates_exactly_the_samples_it_changes(tmp_path, tiny):
    """One --output, one change at a time from a base run: count what is generated again."""
    data = tmp_path / "two.jsonl"
    rows = [
        {"id": "p1", "q": "What is 2+3?", "a": "5", "b": "6"},
        {"id": "p2", "q": "What is 4*4?", "a": "16", "b": "17"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    engine = HFEngine(*tiny)
    base = EvalConfig(
        data=str(data),
        question_field="q",
        answer_field="a",
        model="tiny",
        max_thinking_tokens=[8, 16],
        max_answer_tokens=3,
        batch_size=4,
    )

    def new_samples(config: EvalConfig) -> int:
        before = len(lines(out)) if (out / "samples.jsonl").exists() else 0
        evaluate(config, str(out), engine=engine, show_progress=False)
        return len(lines(out)) - before

    assert new_samples(base) == 4
    assert new_samples(base) == 0, "the same command resumes without generating anything"
    changes = {
        "model": (dict(model="tiny-2"), 4),
        "engine": (dict(engine="reprefill"), 4),
        "format": (dict(format="r1"), 4),
        "temperature": (dict(temperature=0.5, seed=0), 4),
        "top_p": (dict(top_p=0.9), 4),
        "top_k": (dict(top_k=5, temperature=0.5, seed=0), 4),
        "repetition_penalty": (dict(repetition_penalty=1.3), 4),
        "seed": (dict(seed=3), 4),
        "max_answer_tokens": (dict(max_answer_tokens=5), 4),
        "answer_prefix": (dict(answer_prefix="Answer:"), 4),
        "extensions": (dict(extensions=["Hmm"]), 4),
        "min_thinking_tokens": (dict(min_thinking_tokens=4), 4),
        "system": (dict(system="Be brief."), 4),
        "answer_field": (dict(answer_field="b"), 4),
        "answer_kind": (dict(answer_kind="integer"), 4),
        "a new cap": (dict(max_thinking_tokens=[8, 32]), 2),
        "a Wait count": (dict(num_ignore=[0, 1]), 4),
        "--limit": (dict(limit=1), 0),
        "--ids": (dict(ids=["p2"]), 0),
    }
    for name, (fields, expected) in changes.items():
        assert new_samples(replace(base, **fields)) == expected, name
        assert new_samples(base) == 0, f"after {name}, the base run's samples are still reused"
    # the benchmark's content: one question edited, one untouched
    rows[1]["q"] = "What is 4*5?"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert new_samples(base) == 1 * 2
    # class_conditional+bf: the caps it enforces are part of its settings
    cls = replace(base, methods=["class_conditional+bf"])
    assert new_samples(cls) == 3 * 2  # default, short cap=8, long cap=16
    assert new_samples(replace(cls, max_thinking_tokens=[8, 32])) == 1 * 2  # only `long cap=32` is new
    # the summary covers every setting of this configuration in the directory
    summary = json.loads((out / "summary.json").read_text())
    labels = {(r["method"], r["setting"]) for r in summary["benchmarks"]["two"]["settings"]}
    assert {
        ("budget_forcing", "cap=8 wait=0"),
        ("budget_forcing", "cap=32 wait=0"),
        ("class_conditional+bf", "long cap=32"),
        ("class_conditional+bf", "long cap=16"),
    } <= labels
    only = evaluate(
        replace(cls, max_thinking_tokens=[8, 32], only_current=True), str(out), engine=engine, show_progress=False
    )
    assert {r["setting"] for r in only["benchmarks"]["two"]["settings"]} == {"default", "short cap=8", "long cap=32"}
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) == len(changes) * 2 + 6, "every invocation is appended to the history"


def test_labels_are_canonical_whatever_the_list(tmp_path, tiny, problems_file):
    engine = HFEngine(*tiny)
    config = EvalConfig(data=str(problems_file), limit=1, max_thinking_tokens=[8], max_answer_tokens=2)
    one = evaluate(config, str(tmp_path / "a"), engine=engine, show_progress=False)
    two = evaluate(replace(config, num_ignore=[0, 1]), str(tmp_path / "b"), engine=engine, show_progress=False)
    assert one["benchmarks"]["twelve"]["settings"][0]["setting"] == "cap=8 wait=0"
    assert [r["setting"] for r in two["benchmarks"]["twelve"]["settings"]] == ["cap=8 wait=0", "cap=8 wait=1"]


def test_seeds_follow_the_problem_not_its_position(tmp_path, tiny, problems_file):
    engine = HFEngine(*tiny)
    config = EvalConfig(
        data=str(problems_file), limit=3, max_thinking_tokens=[12], max_answer_tokens=2, temperature=1.0, seed=7
    )
    evaluate(config, str(tmp_path / "a"), engine=engine, show_progress=False)
    third = [r for r in lines(tmp_path / "a") if r["id"] == lines(tmp_path / "a")[2]["id"]][0]
    evaluate(replace(config, limit=None, ids=[third["id"]]), str(tmp_path / "b"), engine=engine, show_progress=False)
    [alone] = lines(tmp_path / "b")
    assert alone["seed"] == third["seed"] and alone["output"] == third["output"]


def test_a_second_run_into_the_same_directory_is_refused_while_the_first_holds_it(tmp_path, tiny_dir, problems_file):
    out = tmp_path / "run"
    args = [
        "eval",
        "--model",
        str(tiny_dir),
        "--data",
        str(problems_file),
        "--max-thinking-tokens",
        "64,128,256",
        "--max-answer-tokens",
        "8",
        "--batch-size",
        "1",
        "--output",
        str(out),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "s1", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        # the event: the first run has written its pid into the lock it holds; stopped there, it holds the lock
        # for as long as the second needs, however fast the first would otherwise finish on a busy machine
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not _holds(out / ".lock", first.pid):
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "the first run ended before it could be held; the test proves nothing"
        second = s1(*args)
        assert second.returncode == 1
        assert "Another s1 eval" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()  # SIGKILL ends a stopped process too
        first.wait()


def _holds(lock: Path, pid: int) -> bool:
    try:
        return lock.read_text().strip() == f"pid {pid}"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_leaves_no_process_and_resumes_exactly(tmp_path, tiny_dir, problems_file, sig):
    out = tmp_path / "run"
    args = [
        "eval",
        "--model",
        str(tiny_dir),
        "--data",
        str(problems_file),
        "--max-thinking-tokens",
        "24,48",
        "--max-answer-tokens",
        "8",
        "--batch-size",
        "2",
        "--output",
        str(out),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )
    samples = out / "samples.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and len(samples.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; the test proves nothing"
    children = descendants(proc.pid)
    assert children, "the grader worker should be running"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "Terminated." in stderr and "Traceback" not in stderr
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)], "a process of the killed run is still alive"
    before = samples.read_text().splitlines()
    assert 3 <= len(before) < 24
    with samples.open("a") as f:  # a crash in the middle of a write leaves a torn line
        f.write('{"benchmark": "twelve", "id": "torn')
    run = s1(*args)
    assert run.returncode == 0, run.stderr
    after = samples.read_text().splitlines()
    identities = [json.loads(line)["identity"] for line in after]
    assert len(identities) == len(set(identities)) == 24
    assert after[: len(before)] == before, "finished samples were rewritten"


def test_unreadable_lines_are_skipped_and_counted(tmp_path, tiny, problems_file):
    out = tmp_path / "run"
    config = EvalConfig(data=str(problems_file), limit=2, max_thinking_tokens=[8], max_answer_tokens=2)
    evaluate(config, str(out), engine=HFEngine(*tiny), show_progress=False)
    with (out / "samples.jsonl").open("ab") as f:
        f.write(b'{"identity": "x", "bad": "\xff\xfe"}\nnot json\n')
    summary = evaluate(config, str(out), engine=HFEngine(*tiny), show_progress=False)
    assert summary["unreadable_lines"] == 2
    assert summary["benchmarks"]["twelve"]["settings"][0]["samples"] == 2


def test_baseline_methods_and_their_control(tmp_path, tiny, problems_file):
    config = EvalConfig(
        data=str(problems_file),
        limit=3,
        model="tiny",
        max_thinking_tokens=[16, 32],
        max_answer_tokens=4,
        methods=[
            "budget_forcing",
            "token_conditional",
            "token_conditional+bf",
            "step_conditional+bf",
            "class_conditional",
            "rejection_sampling",
        ],
        tokens_per_step=8,
        max_tries=3,
        seed=0,
    )
    summary = evaluate(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)
    bench = summary["benchmarks"]["twelve"]
    rows = {(r["method"], r["setting"]): r for r in bench["settings"]}
    assert ("token_conditional", "tokens=16") in rows and ("step_conditional+bf", "steps=4") in rows
    assert {("class_conditional", s) for s in ("default", "short", "long")} <= set(rows)
    assert bench["methods"]["budget_forcing"]["control"] == 100.0
    assert bench["methods"]["token_conditional+bf"]["control"] == 100.0
    # class-conditional Control as the paper defines it: short below the default's mean thinking, long above
    default, short, long = (rows[("class_conditional", s)] for s in ("default", "short", "long"))
    expected = (
        100.0
        * (
            (short["mean_thinking_tokens"] < default["mean_thinking_tokens"])
            + (long["mean_thinking_tokens"] > default["mean_thinking_tokens"])
        )
        / 2
    )
    assert bench["methods"]["class_conditional"]["control"] == expected
    assert default["in_control"] is None and default["reference"] is True
    records = lines(tmp_path / "run")
    tcc = [r for r in records if r["method"] == "token_conditional" and r["setting"] == "tokens=16"]
    assert all("Think for up to 16 tokens." in r["prompt"] for r in tcc)
    rejection = [r for r in records if r["method"] == "rejection_sampling"]
    assert rejection and all(1 <= r["tries"] <= 3 for r in rejection)
    assert all(r["thinking_tokens"] <= 16 for r in rejection if r["fits"] and r["setting"] == "tokens=16")
    assert "Control:" in (tmp_path / "run" / "summary.md").read_text(), "the summary says what each metric means"


def test_parallel_samples_report_majority_and_pass_at_k(tmp_path, tiny, problems_file):
    config = EvalConfig(
        data=str(problems_file),
        limit=2,
        max_thinking_tokens=[16],
        max_answer_tokens=4,
        samples=3,
        temperature=1.0,
        seed=1,
    )
    summary = evaluate(config, str(tmp_path / "run"), engine=HFEngine(*tiny), show_progress=False)
    [row] = summary["benchmarks"]["twelve"]["settings"]
    assert row["samples"] == 6 and row["problems"] == 2 and set(row["maj@k"]) == {1, 2, 3}
    passes = [row["pass@k"][k] for k in (1, 2, 3)]
    assert passes == sorted(passes)
    assert "maj@3" in (tmp_path / "run" / "summary.md").read_text()


def test_greedy_with_many_samples_is_refused():
    with pytest.raises(UserError, match="--temperature above 0"):
        EvalConfig(samples=4).settings()


def test_amc23_and_a_users_task_file_run_from_the_shared_data(tmp_path, tiny_dir, data_dir):
    out = tmp_path / "amc"
    run = s1(
        "eval",
        "--model",
        str(tiny_dir),
        "--benchmark",
        "amc23",
        "--limit",
        "2",
        "--data-dir",
        str(data_dir),
        "--max-thinking-tokens",
        "8",
        "--max-answer-tokens",
        "2",
        "--output",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "## amc23" in run.stdout and len(lines(out)) == 2
    task = tmp_path / "mine.yaml"
    task.write_text(
        "task: minerva_short\ndata_file: minerva_math.jsonl\ndataset_path: math-ai/minervamath\n"
        'doc_to_text: "{{ problem }} Answer briefly."\ndoc_to_target: "{{ solution | last_boxed }}"\n'
    )
    run = s1(
        "eval",
        "--model",
        str(tiny_dir),
        "--benchmark",
        str(task),
        "--limit",
        "2",
        "--data-dir",
        str(data_dir),
        "--max-thinking-tokens",
        "8",
        "--max-answer-tokens",
        "2",
        "--output",
        str(tmp_path / "mine"),
    )
    assert run.returncode == 0, run.stderr
    first = next(r for r in lines(tmp_path / "mine") if r["id"] == "0")
    assert first["benchmark"] == "minerva_short" and "Answer briefly." in first["prompt"]
    assert first["gold"] == "1.6"


def test_report_puts_runs_side_by_side(tmp_path, tiny, problems_file):
    for name, caps in (("a", [8, 16]), ("b", [16])):
        config = EvalConfig(data=str(problems_file), limit=2, max_thinking_tokens=caps, max_answer_tokens=2)
        evaluate(config, str(tmp_path / name), engine=HFEngine(*tiny), show_progress=False)
    text = compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "both.png")
    assert "| twelve | budget_forcing | cap=16 wait=0 | " in text
    header = text.splitlines()[0]
    assert header.endswith("| a | b |")
    assert "cap=8 wait=0 | " in text and "| – |" in text  # b has no cap=8 point
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"


def test_samples_graded_by_an_older_grader_are_graded_again(tmp_path, tiny, problems_file):
    out = tmp_path / "run"
    config = EvalConfig(data=str(problems_file), limit=2, max_thinking_tokens=[8], max_answer_tokens=2)
    evaluate(config, str(out), engine=HFEngine(*tiny), show_progress=False)
    original = lines(out)
    stale = [{**r, "grader": 1, "correct": not r["correct"], "reason": "old grader"} for r in original]
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale))
    summary = evaluate(config, str(out), engine=HFEngine(*tiny), show_progress=False)
    after = lines(out)
    assert len(after) == 4, "each stale grade is followed by a new one; nothing is generated again"
    regraded = {r["identity"]: r for r in after[2:]}
    assert {i: (r["correct"], r["reason"]) for i, r in regraded.items()} == {
        r["identity"]: (r["correct"], r["reason"]) for r in original
    }
    [row] = summary["benchmarks"]["twelve"]["settings"]
    assert row["accuracy"] == 100.0 * sum(r["correct"] for r in original) / 2


def test_partial_settings_are_shown_but_kept_out_of_the_method_metrics(tmp_path, tiny, problems_file):
    out = tmp_path / "run"
    engine = HFEngine(*tiny)
    evaluate(
        EvalConfig(data=str(problems_file), limit=1, max_thinking_tokens=[8], max_answer_tokens=2),
        str(out),
        engine=engine,
        show_progress=False,
    )
    summary = evaluate(
        EvalConfig(data=str(problems_file), limit=2, max_thinking_tokens=[16], max_answer_tokens=2),
        str(out),
        engine=engine,
        show_progress=False,
    )
    rows = {r["setting"]: r for r in summary["benchmarks"]["twelve"]["settings"]}
    assert rows["cap=16 wait=0"]["complete"] and not rows["cap=8 wait=0"]["complete"]
    assert rows["cap=8 wait=0"]["problems"] == 1
    method = summary["benchmarks"]["twelve"]["methods"]["budget_forcing"]
    assert method["scaling_per_1k_tokens"] is None, "one complete setting has no slope"
    assert method["performance"] == rows["cap=16 wait=0"]["accuracy"]
    assert "(1 of 2 problems)" in (out / "summary.md").read_text()


INTERRUPT_DRIVER = '''
"""Runs `s1 eval` and sends this process SIGINT at one chosen point, the same point every time."""
import os, signal, sys

point, after = sys.argv[1], int(sys.argv[2])
sys.argv = ["s1", *sys.argv[3:]]
import s1.cli
import s1.evaluate.runner as runner
from s1.core.rundir import RunDir


def interrupt():
    os.kill(os.getpid(), signal.SIGINT)


class Swallowed:
    """SIGINT handled inside a finalizer: CPython prints "Exception ignored" and the run goes on."""

    def __del__(self):
        interrupt()
        for _ in range(10000):
            pass  # the handler runs here, inside __del__


if point == "finalizer":  # in the main thread, while the engine decodes
    load = runner.load_engine

    def load_engine(*args, **kwargs):
        engine = load(*args, **kwargs)
        generate = engine.generate

        def counted(requests, on_completion=None, **options):
            def done(i, completion):
                on_completion(i, completion)
                counted.n += 1
                if counted.n == after:
                    Swallowed()

            return generate(requests, on_completion=done, **options)

        counted.n = 0
        engine.generate = counted
        return engine

    runner.load_engine = load_engine
elif point == "grading":  # from the grading thread, right after it recorded a sample
    append = RunDir.append

    def appended(self, record):
        append(self, record)
        appended.n += 1
        if appended.n == after:
            interrupt()

    appended.n = 0
    RunDir.append = appended
elif point == "summary":  # as the summary is about to be made and written
    summarize = runner.summarize

    def summarizing(*args, **kwargs):
        interrupt()
        return summarize(*args, **kwargs)

    runner.summarize = summarizing
s1.cli.main()
'''


def _workers_of(pid: int) -> list[int]:
    """Grading workers started by process `pid` that are still alive (they carry their parent's pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            any(b"grading_worker" in part for part in cmdline)
            and str(pid).encode() in cmdline
            and alive(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("point", ["finalizer", "grading", "summary"])
def test_an_interrupted_run_never_exits_0_or_writes_a_summary(tmp_path, tiny_dir, problems_file, point):
    """SIGINT at a chosen point (deterministic: after the Nth sample, or as the summary starts, never after a
    sleep). A busy run once exited 0 with a summary after Ctrl-C: the KeyboardInterrupt was swallowed (in a
    finalizer CPython only prints "Exception ignored"). Now the signal is remembered (core/signals.py)."""
    driver = tmp_path / "driver.py"
    driver.write_text(INTERRUPT_DRIVER)
    out = tmp_path / "run"
    args = ["eval", "--model", str(tiny_dir), "--data", str(problems_file), "--limit", "2"]
    args += ["--max-thinking-tokens", "8,16,24", "--max-answer-tokens", "4", "--batch-size", "1", "--output", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.Popen(
        [sys.executable, str(driver), point, "2", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 130 and "Interrupted." in stderr, stderr[-3000:]
    assert not (out / "summary.json").exists(), "an interrupted run wrote a summary as if complete"
    assert not _workers_of(proc.pid), "the grading worker outlived the run"
    if point == "grading":
        before = (out / "samples.jsonl").read_text().splitlines()
        resumed = s1(*args)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        after = (out / "samples.jsonl").read_text().splitlines()
        identities = [json.loads(line)["identity"] for line in after]
        assert after[: len(before)] == before and len(set(identities)) == len(identities) == 6
