"""Run directories read through typed records: an old directory opens, resumes and reports unchanged; a
record with wrong-typed or missing fields is skipped and counted like an unreadable line (issue 28)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from s1.evaluate.config import EvalConfig
from s1.report.compare import compare
from s1.report.html import render
from tests.evaluate.test_evaluate import evaluate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "eval_run_b86fcda"


def lines(run: Path) -> list[str]:
    return (run / "samples.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.fixture
def old_run(tmp_path) -> tuple[Path, EvalConfig]:
    """A copy of the run directory written at commit b86fcda, and the configuration that wrote it (its
    README). model="tiny" names no model this machine can load: generating anything would fail."""
    shutil.copy(FIXTURE / "two_math.jsonl", tmp_path)
    shutil.copytree(FIXTURE / "run", tmp_path / "run")
    config = EvalConfig(
        data=str(tmp_path / "two_math.jsonl"),
        model="tiny",
        methods=["budget_forcing", "rejection_sampling", "majority", "rebase"],
        max_thinking_tokens=[8, 16],
        num_ignore=[0, 1],
        max_answer_tokens=4,
        samples=2,
        temperature=1.0,
        seed=0,
        max_tries=2,
        reward_model="compat_reward:step_length",
        widths=[2],
        max_step_tokens=4,
        max_depth=4,
        rebase_vote="weighted",  # b86fcda's default; REBASE now answers by majority vote, as the paper's Figure 7
    )
    return tmp_path / "run", config


def test_a_run_directory_written_before_the_split_opens_resumes_and_reports(old_run, tmp_path):
    run, config = old_run
    before = lines(run)
    summary = evaluate(config, str(run), show_progress=False)
    assert lines(run) == before, "a sample was generated or graded again"
    old = json.loads((FIXTURE / "run" / "summary.json").read_text())
    assert json.loads((run / "summary.json").read_text())["benchmarks"] == json.loads(json.dumps(summary))["benchmarks"]
    assert as_before(summary["benchmarks"]) == without_rejection(old["benchmarks"])
    for line in (FIXTURE / "run" / "summary.md").read_text().splitlines():
        if line.startswith(
            "| budget_forcing | cap="
        ):  # the accuracy rows read as before, a strict-control column added
            assert line[: line.rindex("|", 0, -1)] in (run / "summary.md").read_text()
    assert (run / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    text = compare([str(run)], tmp_path / "both.png")
    cut = sum(
        r["finish_reason"] == "length" and r["answer_tokens"] > 0
        for r in map(json.loads, before)
        if r.get("setting") == "cap=8 wait=0" and r["method"] == "budget_forcing"
    )
    assert cut and f"| two_math | budget_forcing | cap=8 wait=0 | 25.0 (6 tok, {cut} cut) |" in text
    assert "| two_math | rebase | width=2 cap=16 wait=1 |" in text
    samples = [r for r in map(json.loads, before) if "points" not in r]  # the page browses samples, not searches
    assert render([str(run)]).count('<details class="sample') == len(samples) == 24


def without_rejection(benchmarks: dict) -> dict:
    out = json.loads(json.dumps(benchmarks))
    for bench in out.values():
        bench["settings"] = [row for row in bench["settings"] if row["method"] != "rejection_sampling"]
        bench["methods"].pop("rejection_sampling")
    return out


def as_before(benchmarks: dict) -> dict:
    """The summary as b86fcda defined it (issue 29 changed three things, checked here and then undone): Control is
    now the paper's Eq. 1 on each setting's mean, b86fcda's per-sample one is kept as strict control; rejection
    sampling's samples that never fit (tries used up) are out of its accuracy and thinking, and counted; each row
    counts its cut answers."""
    records = [json.loads(line) for line in lines(FIXTURE / "run")]
    for bench in benchmarks.values():
        for row in bench["settings"]:
            cut = row.pop("cut_answers")  # counted since (issue 29 item 7): answers a token limit stopped
            if "trajectories" not in row:
                mine = [r for r in records if r.get("setting") == row["setting"] and r["method"] == row["method"]]
                assert cut == sum(r["finish_reason"] == "length" and r["answer_tokens"] > 0 for r in mine)
            if row["method"] == "rejection_sampling":
                mine = [r for r in records if r.get("setting") == row["setting"] and r["method"] == row["method"]]
                fitting = [r for r in mine if r["fits"]]
                assert row["unfit"] == len(mine) - len(fitting) > 0 and row["samples"] == len(mine)
                assert row["mean_tries"] == sum(r["tries"] for r in mine) / len(mine)
                assert row["accuracy"] == 100.0 * sum(r["correct"] for r in fitting) / len(fitting)
                assert row["mean_thinking_tokens"] == sum(r["thinking_tokens"] for r in fitting) / len(fitting)
                assert row["in_control"] is row["strict_in_control"] is True
            elif row.get("strict_in_control") is not None:
                high = int(row["setting"].split("=")[1].split()[0])
                assert row["in_control"] == (row["mean_thinking_tokens"] <= high)
                row["in_control"] = row.pop("strict_in_control")
        for metrics in bench["methods"].values():
            metrics["control"] = metrics.pop("strict_control")
    return without_rejection(benchmarks)


BAD = {
    "a verdict as a string": lambda r: {**r, "correct": "false"} if "points" not in r else None,
    "a token count as a string": lambda r: {**r, "thinking_tokens": "12"} if "points" not in r else None,
    "a missing field": lambda r: {k: v for k, v in r.items() if k != "answer_tokens"} if "points" not in r else None,
    "an identity as a number": lambda r: {**r, "identity": 7},
    "forced spans that are not spans": lambda r: {**r, "forced": "not a list"} if "points" not in r else None,
    "a search point's verdict as a string": lambda r: (
        {**r, "points": {n: {**p, "correct": "true"} for n, p in r["points"].items()}} if "points" in r else None
    ),
    "a negative token count": lambda r: {**r, "thinking_tokens": -100000},
    "seconds that are not a number": lambda r: {**r, "seconds": float("nan")},
    "a trajectory with negative tokens": lambda r: (
        {**r, "trajectories": [{**r["trajectories"][0], "generated_tokens": -5}] + r["trajectories"][1:]}
        if "points" in r
        else None
    ),
    "a trajectory without its tokens": lambda r: (
        {**r, "trajectories": [{"answer": "1"}] + r["trajectories"][1:]} if "points" in r else None
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_record_with_wrong_typed_fields_is_skipped_and_counted_like_an_unreadable_line(old_run, case):
    """Each bad copy repeats a finished sample's identity (a copy later in the file would win): the good
    record stands, the numbers do not move, nothing is generated, and the line is counted."""
    run, config = old_run
    records = [json.loads(line) for line in lines(run)]
    wrong = [r for r in records if not r["correct"]]  # a string "false" must not make these right
    bad = [b for b in (BAD[case](r) for r in wrong) if b is not None][:3]
    assert bad
    with (run / "samples.jsonl").open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(b) + "\n" for b in bad)
    before = lines(run)
    summary = evaluate(config, str(run), show_progress=False)
    assert lines(run) == before
    assert summary["unreadable_lines"] == len(bad)
    old = json.loads((FIXTURE / "run" / "summary.json").read_text())
    assert as_before(summary["benchmarks"]) == without_rejection(old["benchmarks"])
    assert f"{len(bad)} unreadable lines in samples.jsonl were skipped" in (run / "summary.md").read_text()
    assert render([str(run)]).count('<details class="sample') == len([r for r in records if "points" not in r])


def test_a_sample_whose_only_record_is_bad_is_generated_again(tmp_path, tiny):
    """A bad line counts for nothing: the sample it held is missing, so resuming generates it again."""
    from s1.engines.hf import HFEngine

    data = tmp_path / "two.jsonl"
    data.write_text('{"id": "a", "question": "What is 2+3?", "answer": "5"}\n')
    config = EvalConfig(data=str(data), max_thinking_tokens=[8], max_answer_tokens=2)
    run = tmp_path / "run"
    engine = HFEngine(*tiny)
    evaluate(config, str(run), engine=engine, show_progress=False)
    [good] = [json.loads(line) for line in lines(run)]
    (run / "samples.jsonl").write_text(json.dumps({**good, "correct": "false", "extracted": 5}) + "\n")
    summary = evaluate(config, str(run), engine=engine, show_progress=False)
    assert summary["unreadable_lines"] == 1
    assert [json.loads(line)["output"] for line in lines(run)[1:]] == [good["output"]]
    assert summary["benchmarks"]["two"]["settings"][0]["accuracy"] == 100.0 * good["correct"]


def test_stale_grades_of_samples_and_searches_are_redone_from_the_records_alone(old_run):
    """Every record graded by another grader version (here with its verdicts flipped) is graded again and
    appended, search records by re-grading their trajectories and choosing again; nothing is generated."""
    run, config = old_run
    records = [json.loads(line) for line in lines(run)]
    for r in records:
        r.update(grader=1, correct=not r["correct"])
        for p in r.get("points", {}).values():
            p["correct"] = not p["correct"]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = evaluate(config, run, show_progress=False)
    after = [json.loads(line) for line in lines(run)]
    assert len(after) == 2 * len(records)
    assert sorted(r["identity"] for r in after[len(records) :]) == sorted(r["identity"] for r in records)
    old = json.loads((FIXTURE / "run" / "summary.json").read_text())
    assert as_before(summary["benchmarks"]) == without_rejection(old["benchmarks"])


def test_every_methods_labels_and_specs_are_those_of_b86fcda():
    """Labels and specs (part of every sample's identity) of all twelve methods, against what b86fcda made;
    the class-conditional lines are those of the paper's prompts (issue 29: a new prompt is a new setting)."""
    from s1.core.rundir import identity_hash

    methods = ["budget_forcing", "token_conditional", "token_conditional+bf", "step_conditional"]
    methods += ["step_conditional+bf", "class_conditional", "class_conditional+bf", "rejection_sampling"]
    methods += ["majority", "best_of_n", "weighted_majority", "rebase"]
    sweeps = [
        EvalConfig(
            methods=methods,
            max_thinking_tokens=[None, 64, 512],
            num_ignore=[0, 2],
            samples=4,
            temperature=0.7,
            reward_model="x:y",
            widths=[4, 8],
            tokens_per_step=32,
            max_tries=5,
            min_thinking_tokens=3,
            rebase_vote="weighted",  # b86fcda's default (now majority, the paper's)
            max_answer_tokens=1024,  # b86fcda's default (now what the context leaves, as s1's evaluation)
        ),
        EvalConfig(methods=["step_conditional"], max_thinking_tokens=[64], steps=[1, 3], max_answer_tokens=1024),
    ]
    made = [f"{s.method} {s.label} {identity_hash(s.spec())}" for c in sweeps for s in c.settings()]
    assert made == (FIXTURE / "setting_specs.txt").read_text().splitlines()
