"""`s1 demo --quick` end to end through the real CLI, its resumption, and `s1 report --html`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from s1.demo import QUICK, task
from s1.report.html import _highlight


def _demo(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s1", "demo", "--quick", "--out", str(out)], capture_output=True, text=True, timeout=900
    )


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    result = _demo(out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reports(demo_run):
    out, result = demo_run
    for number, name in enumerate(("pool", "curate", "train", "eval", "report"), 1):
        assert f"[{number}/5] {name}" in result.stderr
    # curation: the planted broken items and evaluation problems are caught, the selection is exported
    report = json.loads((out / "curate" / "report.json").read_text())
    rules = {(stage["stage"], rule): count for stage in report["stages"] for rule, count in stage["rules"].items()}
    assert {("quality", "image"), ("quality", "numbering"), ("quality", "no reference")} <= set(rules)
    assert rules[("decontaminate", "eval:heldout")] >= QUICK.planted
    assert rules[("difficulty", "solved")] > 0
    selection = [json.loads(line) for line in (out / "curate" / "s1k.jsonl").open()]
    assert len(selection) == QUICK.select
    assert {task.parse(r["question"]).domain for r in selection} == set(task.RULES)
    held = {json.loads(line)["question"] for line in (out / "data" / "heldout.jsonl").open()}
    assert not held & {r["question"] for r in selection}
    # training produced a model; evaluation graded every sample of every setting
    assert (out / "student" / "final" / "s1_train.json").exists()
    for run, settings in (("eval-caps", len(QUICK.caps)), ("eval-wait", len(QUICK.num_ignore)), ("eval-vote", 1)):
        summary = json.loads((out / run / "summary.json").read_text())
        rows = summary["benchmarks"]["heldout"]["settings"]
        assert len(rows) == settings and all(r["complete"] and r["problems"] == QUICK.held_out for r in rows)
    vote = json.loads((out / "eval-vote" / "summary.json").read_text())["benchmarks"]["heldout"]["settings"][0]
    assert set(vote["maj@k"]) == {str(k) for k in range(1, QUICK.vote_samples + 1)}
    # the terminal shows the tables; the page has the plot, the tables and the samples
    assert "| budget_forcing | cap=16 wait=0 |" in result.stdout and "maj@3" in result.stdout
    assert (out / "scaling.png").stat().st_size > 10_000 and "| eval-caps | eval-wait | eval-vote |" in (
        out / "report.md"
    ).read_text()
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 1 and "<script src" not in page and "http://" not in page.split("<svg")[0]
    for text in ("eval-caps", "eval-wait", "eval-vote", "cap=16 wait=0", "maj@3", "95% CI", "Control %", "digit walks"):
        assert text in page
    samples = QUICK.held_out * (len(QUICK.caps) + len(QUICK.num_ignore) + QUICK.vote_samples)
    assert page.count('<details class="sample') == samples
    # the spans eval stored mark exactly what budget forcing wrote, and the page marks each of them
    records = [
        json.loads(line)
        for run in ("eval-caps", "eval-wait", "eval-vote")
        for line in (out / run / "samples.jsonl").open()
    ]
    forced_ends = 0
    for r in records:
        kinds = [kind for kind, _, _ in r["forced"]]
        assert kinds.count("extension") == r["extensions_used"] and kinds.count("forced_end") == int(r["capped"])
        for kind, start, end in r["forced"]:
            text = r["output"][start:end]
            expected = {
                "extension": text == "Wait",
                "delimiter": "<|im_start|>answer".endswith(text),  # after a sampled <|im_start|>
                "forced_end": text.lstrip("\n") == "<|im_start|>answer\nFinal Answer:",
            }
            assert expected[kind], (kind, text)
        forced_ends += r["capped"]
    assert forced_ends > 0
    assert page.count('<mark class="forced_end" title=') == forced_ends
    assert page.count('<mark class="extension" title=') == sum(r["extensions_used"] for r in records)


def test_teacher_says_wait_only_to_walk_on_after_a_guess_or_to_recheck_a_line():
    """What "Wait" means in the traces is what a forced one asks for: after a hasty guess, the rest of the
    walk, whose last digit is the answer; after a whole walk, its last line again. Never a step past the end."""
    import random

    rng, stops = random.Random(7), []
    for problem in task.held_out(600, seed=3, min_steps=1):
        lines = problem.trace(rng).split("\n")
        walk = problem.trace().split("\n")
        if problem.steps > task.LOOK_STEPS:  # long walks are written out whole
            assert lines[: problem.steps] == walk
            rest = lines[problem.steps :]
        else:  # short ones: one line, then a guess; sometimes "Wait" and the rest of the walk
            assert lines[0] == walk[0] and lines[1].startswith("So: ")
            stops.append(len(lines) == 2)
            if len(lines) == 2:
                assert lines[1] == f"So: {problem.answer}"  # the teacher stops only on a guess that is right
                continue
            assert lines[2] == "Wait, walk on:" and lines[3 : 2 + problem.steps] == walk[1:]
            rest = lines[2 + problem.steps :]
        assert set(rest) <= {"Wait, " + walk[-1].split(": ", 1)[1]}  # re-checks redo the last line
        assert len(rest) < len(task.FINAL_CHECKS)
    assert 0.6 < sum(stops) / len(stops) < 0.9  # short walks mostly stop at the guess
    # the teacher role curation calls writes these traces, seeded by the question
    problem = task.Problem("square", 3, 4, 5)
    reply = task.teacher(problem.question, seed=2)
    assert reply == {
        "thinking": problem.trace(random.Random(f"2:{problem.question}")),
        "answer": f"Answer: {problem.answer}",
    }


@pytest.mark.slow
def test_second_run_reuses_what_the_first_finished(demo_run):
    out, _ = demo_run
    model = out / "student" / "final" / "model.safetensors"
    before = {p: _lines(p) for p in out.glob("eval-*/samples.jsonl")}
    stamp = model.stat().st_mtime_ns
    result = _demo(out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert model.stat().st_mtime_ns == stamp  # not trained again
    assert {p: _lines(p) for p in out.glob("eval-*/samples.jsonl")} == before  # nothing generated again
    calls = json.loads((out / "curate" / "report.json").read_text())["calls_total"]
    assert calls["repeated"] == 0
    assert re.search(r"traces: .*sent 0, from cache \d+", result.stderr)


def test_report_html_is_one_sentence_on_bad_input(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "s1",
            "report",
            str(tmp_path),
            "--html",
            str(tmp_path / "r.html"),
            "--plot",
            str(tmp_path / "r.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "has no summary.json" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_forced_spans_are_marked_and_text_is_escaped():
    """The page shows model text as text: markup in an output is escaped, spans out of range are skipped."""
    output = "<script>x</script> 1+1=2Wait, sure\n<|im_start|>answer\nFinal Answer: 2"
    wait = output.index("Wait")
    end = output.index("\n<|im_start|>")
    page = _highlight(
        output,
        [
            ["extension", wait, wait + 4],
            ["forced_end", end, end + len("\n<|im_start|>answer\nFinal Answer:")],
            ["extension", 5, 999],
        ],
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<mark class="extension" title="extension (forced)">Wait</mark>' in page
    assert '<mark class="forced_end" title="forced end">\n&lt;|im_start|&gt;answer\nFinal Answer:</mark>' in page


@pytest.mark.parametrize(
    "where, message",
    [
        ("file", "is a file"),
        ("/proc/s1-demo", "Cannot create --out"),
        ("busy", "is not empty and holds no demo run"),
        ("corrupt", "plan.json cannot be read"),
    ],
)
def test_demo_out_that_cannot_be_used_is_one_sentence(tmp_path, where, message):
    target = {"file": tmp_path / "taken.txt", "busy": tmp_path, "corrupt": tmp_path}.get(where, Path(where))
    if where == "file":
        target.write_text("x")
    if where == "busy":
        (tmp_path / "notes.txt").write_text("mine")
    if where == "corrupt":
        (tmp_path / "plan.json").write_text("{not json")
    result = _demo(target)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") <= 2


def test_demo_will_not_resume_a_run_of_other_sizes(tmp_path):
    """A directory holding a full demo is not silently reused by --quick (its model was trained for another size)."""
    import dataclasses

    (tmp_path / "plan.json").write_text(json.dumps(dataclasses.asdict(dataclasses.replace(QUICK, pool=3000))))
    result = _demo(tmp_path)
    assert result.returncode == 1 and "holds another demo run" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_report_html_shows_only_what_the_summary_counts_and_survives_bad_records(demo_run, tmp_path):
    """Samples of another context in the same directory are not shown; a broken record is skipped, not fatal;
    a summary without the fields the page needs is one sentence."""
    import shutil

    run = tmp_path / "eval-caps"
    shutil.copytree(demo_run[0] / "eval-caps", run)
    lines = (run / "samples.jsonl").read_text().splitlines()
    other = [json.loads(line) for line in lines[:5]]
    for i, r in enumerate(other):
        r.update(identity=f"other-{i}", context="another-model")
    broken = dict(json.loads(lines[0]), identity="broken", forced="not a list")
    with (run / "samples.jsonl").open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in other + [broken])
    page = tmp_path / "page.html"
    result = subprocess.run(
        [sys.executable, "-m", "s1", "report", str(run), "--html", str(page), "--plot", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert page.read_text().count('<details class="sample') == QUICK.held_out * len(QUICK.caps)
    summary = json.loads((run / "summary.json").read_text())
    for row in summary["benchmarks"]["heldout"]["settings"]:
        del row["ci_low"]
    (run / "summary.json").write_text(json.dumps(summary))
    result = subprocess.run(
        [sys.executable, "-m", "s1", "report", str(run), "--html", str(page), "--plot", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "lacks what the page needs" in result.stderr and "Traceback" not in result.stderr


def test_a_second_demo_on_the_same_out_is_refused_and_other_commands_keep_out(tmp_path):
    """Two demos on one --out built one model directory at once; an eval run written into a demo mixed with it."""
    from s1 import UserError
    from s1.core.rundir import check_kind, claim_directory, unlock_directory

    out = tmp_path / "demo"
    lock = claim_directory(out, "demo", "--out")  # as a first `s1 demo` holds it
    try:
        result = _demo(out)
    finally:
        unlock_directory(lock)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Another s1 demo" in result.stderr and "choose another --out" in result.stderr
    assert not (out / "plan.json").exists() and not (out / "data").exists()
    for kind in ("eval", "curate", "train"):
        with pytest.raises(UserError, match="holds an s1 demo run"):
            check_kind(out, kind)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "is not empty" in _demo(busy).stderr
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"], "a refused directory was written into"
