"""s1 curate end to end: real models in every role, a real kill in the middle, real servers.

The pool is built from ../shared/data files (MATH problems, OlympiadBench, Minerva); the embedded
SmolLM2 (llama.cpp) plays teacher, solver, judge and classifier with tiny budgets, so the whole
pipeline runs in about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import DATA

S1 = [sys.executable, "-m", "s1"]


def write_config(path: Path, output: Path, roles: dict | None = None, **extra) -> Path:
    embedded = {"engine": "llamacpp", "model": "smollm2"}
    config = {
        "output": str(output),
        "sources": [
            {
                "name": "math",
                "path": str(DATA / "math_cot_100.jsonl"),
                "fields": {"question": "question", "solution": "gt_cot", "answer": "gt", "id": "idx"},
                "limit": 20,
            },
            {
                "name": "olympiad",
                "path": str(DATA / "olympiadbench.jsonl"),
                "fields": {"answer": "final_answer"},
                "limit": 12,
            },
            {
                "name": "minerva",
                "path": str(DATA / "minerva_math.jsonl"),
                "fields": {"question": "problem", "solution": "solution", "answer": "solution"},
                "limit": 8,
            },
        ],
        "eval_sets": ["aime24", "math500"],
        "data_dir": str(DATA),
        "domains": str(DATA / "msc.json"),
        "student": "smollm2",
        "roles": roles
        or {
            "teacher": {**embedded, "max_thinking_tokens": 16, "max_tokens": 12},
            "solvers": [{**embedded, "max_tokens": 12}],
            "judge": {**embedded, "max_tokens": 8},
            "classifier": {**embedded, "max_tokens": 8},
        },
        "selection": {"n": 12, "strategy": "s1", "seed": 0},
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def curate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([*S1, "curate", *args], capture_output=True, text=True, timeout=timeout, env=env)


def teacher_replies(store: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        n = db.execute("SELECT COUNT(*) FROM calls WHERE role = 'teacher' AND status = 'done'").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


def rows(output: Path) -> list[dict]:
    db = sqlite3.connect(output / "curate.sqlite")
    db.row_factory = sqlite3.Row
    found = [dict(r) for r in db.execute("SELECT * FROM questions ORDER BY position")]
    db.close()
    return found


@pytest.mark.slow
def test_killed_run_resumes_without_losing_rows_or_repeating_calls(tmp_path):
    output = tmp_path / "run"
    config = write_config(tmp_path / "curate.yaml", output)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [*S1, "curate", "run", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.time() + 300
        while teacher_replies(output / "curate.sqlite") < 10:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the teacher wrote no traces in time"
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"processes left behind by the killed run: {alive}"
    done_before = teacher_replies(output / "curate.sqlite")
    assert 10 <= done_before < 37, "the kill should land in the middle of the teacher stage"

    result = curate("run", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "report.json").read_text())
    calls = report["calls_total"]
    assert calls["repeated"] == 0, calls
    assert calls["resent"] <= 8  # at most the calls in flight at the kill (the teacher's concurrency, 8)
    assert report["calls"]["teacher"]["keys"] >= done_before

    pool = rows(output)
    assert len(pool) == 40 and len({r["id"] for r in pool}) == 40
    # every row has a verdict: dropped by a named rule, or alive with everything selection needs
    for row in pool:
        if row["dropped_by"] is None:
            assert row["thinking"] and row["attempt"] and row["domain"] and row["trace_tokens"] is not None
            assert row["solver_correct"] is not None and not any(json.loads(row["solver_correct"]))
        else:
            assert row["drop_rule"]
    math500 = {json.loads(line)["problem"].strip() for line in (DATA / "math500.jsonl").open()}
    planted = [r for r in pool if r["question"].strip() in math500]
    assert planted and all(r["dropped_by"] == "decontaminate" and r["drop_rule"] == "eval:math500" for r in planted)

    exported = [json.loads(line) for line in (output / "s1k.jsonl").open()]
    assert len(exported) == report["selected"] == min(12, sum(r["dropped_by"] is None for r in pool))
    assert set(exported[0]) == {
        "question",
        "solution",
        "cot_type",
        "source_type",
        "metadata",
        "thinking_trajectories",
        "attempt",
    }
    assert (output / "trace_lengths.png").stat().st_size > 0 and "Model calls" in (output / "report.md").read_text()

    # a third run is answered entirely from the cache and writes the same set
    again = curate("run", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((output / "report.json").read_text())
    assert all(c["sent"] == 0 for c in rerun["last_runs"]["traces"]["calls"].values())
    assert rerun["calls_total"]["sent"] == calls["sent"] and rerun["calls_total"]["from_cache_last_run"] > 0
    assert [json.loads(line) for line in (output / "s1k.jsonl").open()] == exported

    status = curate("status", str(output))
    assert status.returncode == 0 and "40 questions" in status.stdout and f"{len(exported)} selected" in status.stdout


def test_exported_records_train(tmp_path):
    """What export writes is what `s1 train` reads: rendered with the s1 training template."""
    from s1.core.formats import get_format
    from s1.core.models import load_tokenizer
    from s1.curate.config import CurateConfig
    from s1.curate.export import records
    from s1.curate.store import Store
    from s1.train.trainer import load_records, render_example

    with Store(tmp_path) as store:
        store.add_questions(
            [
                {
                    "id": "a/1",
                    "position": 0,
                    "source": "a",
                    "question": "What is 2+3?",
                    "solution": "2+3=5",
                    "answer": "5",
                    "cot_type": "math",
                    "metadata": "{}",
                    "thinking": "2 plus 3 is 5.",
                    "attempt": "\\boxed{5}",
                    "domain": "11",
                    "trace_tokens": 6,
                }
            ]
        )
        store.set_selected(["a/1"])
        data = records(store)
    path = tmp_path / "s1k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    tokenizer, _ = load_tokenizer("smollm2")
    loaded = load_records(str(path))
    example = render_example(loaded[0], 0, tokenizer, get_format("s1"))
    text = json.dumps(example)
    assert "2 plus 3 is 5." in text and "\\\\boxed{5}" in text
    assert json.loads(data[0]["metadata"])["id"] == "a/1"
    assert CurateConfig  # the config module imports without a model


@pytest.fixture(scope="module")
def tiny_server(tiny_dir):
    from tests.serve.test_serve import served

    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "8") as base:
        yield base


def test_remote_teacher_spreads_calls_and_marks_failures(tmp_path, tiny_dir, tiny_server):
    """Teacher, solver, judge and classifier behind OpenAI-compatible servers: calls go to both, a server
    that fails every call is a marked failure (the row is dropped at quality), and once it is healthy a
    re-run sends exactly the failed calls again."""
    from tests.engines.test_remote import Proxy

    good, bad = Proxy(tiny_server), Proxy(tiny_server)
    try:
        remote = {"engine": "remote", "model": str(tiny_dir), "remote_mode": "ids", "concurrency": 4, "retries": 0}
        roles = {
            "teacher": {**remote, "base_urls": [good.url, bad.url], "max_thinking_tokens": 12, "max_tokens": 6},
            "solvers": [{**remote, "base_urls": [good.url], "max_tokens": 6}],
            "judge": {**remote, "base_urls": [good.url], "max_tokens": 6, "retries": 1},
            "classifier": {**remote, "base_urls": [good.url], "max_tokens": 6, "retries": 1},
        }
        output = tmp_path / "run"
        config = write_config(tmp_path / "remote.yaml", output, roles)
        from s1.curate import load_config, run

        run(load_config(config), ["collect", "decontaminate", "traces"], show_progress=False, say=lambda s: None)
        sent_to = {good: len(good.log), bad: len(bad.log)}
        assert sent_to[good] > 0 and sent_to[bad] > 0, "calls should be spread over both servers"

        good.fail_always = bad.fail_always = 500  # now every server fails: the calls are marked, not lost
        with sqlite3.connect(output / "curate.sqlite") as db:
            db.execute(
                "UPDATE calls SET status = 'failed' WHERE role = 'teacher' AND key IN "
                "(SELECT key FROM calls WHERE role = 'teacher' LIMIT 3)"
            )
        run(load_config(config), ["traces", "quality"], show_progress=False, say=lambda s: None)
        failed = [r for r in rows(output) if r["drop_rule"] == "teacher call failed"]
        assert len(failed) == 3

        good.fail_always = bad.fail_always = None
        report = run(load_config(config), None, show_progress=False, say=lambda s: None)
        assert not [r for r in rows(output) if r["drop_rule"] == "teacher call failed"]
        teacher = report["calls"]["teacher"]
        assert teacher["failed"] == 0 and teacher["repeated"] == 0
        assert report["last_runs"]["traces"]["calls"]["teacher"]["sent"] == 3
        assert report["last_runs"]["diversity"]["classified"] > 0
    finally:
        good.close()
        bad.close()
