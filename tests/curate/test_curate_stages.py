"""s1 curate's model-free parts: quality rules, decontamination, selection, config and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from s1.core.errors import UserError
from s1.curate import load_config, run
from s1.curate.quality import question_rule, row_rule
from s1.curate.selection import Candidate, select
from s1.curate.store import Store
from tests.conftest import DATA


# ------------------------------------------------------------------------------------------ quality
@pytest.mark.parametrize(
    "question, source, rule",
    [
        ("See the figure ![Image](https://x/y.png) and find x.", "math", "image"),
        ("![Image] Find the area.", "math", "image"),
        ("Look: ![a triangle](tri.png)", "math", "image"),
        ("[asy] draw((0,0)--(1,1)); [/asy] Find the slope.", "math", "asymptote"),
        ("p1. Find x if x+1=2.", "olympiad", "numbering"),
        ("Solve these: p12. x+1=2 and p999. y=3", "olympiad", "numbering"),
        ("The answer is **12** apples.", "math", "bold with digits"),
        ("Find **x2** such that x2 > 0.", "math", "bold with digits"),
        ("   ", "math", "empty question"),
        ("", "math", "empty question"),
    ],
)
def test_quality_rules_drop(question, source, rule):
    assert question_rule(question, source) == rule


@pytest.mark.parametrize(
    "question, source",
    [
        ("In step1. we add 2; what is 3+4?", "math"),  # p inside a word is not a marker
        ("Compute p0. and then x.", "math"),  # p0 is not p1..p999
        ("Let p1000. be large; find it.", "math"),  # p1000 is past p999
        ("Compute 2 ** 10.", "math"),  # a power, not bold
        ("**Note** that the triangle is right.", "math"),  # bold without a digit on the line
        ("What is 5! divided by 3!?", "math"),  # a factorial, not an image
        ("[asy] draw((0,0)--(1,1)); [/asy] Find the slope.", "AIME"),  # AIME keeps its figures
        ("Let p be a prime. Show p.1 holds.", "math"),
    ],
)
def test_quality_near_misses_are_kept(question, source):
    assert question_rule(question, source) is None


def _row(**values):
    base = {
        "question": "What is 2+3?",
        "source": "math",
        "thinking": "2+3=5",
        "attempt": "5",
        "solution": "5",
        "answer": "5",
        "trace_error": None,
    }
    return {**base, **values}


@pytest.mark.parametrize(
    "values, rule",
    [
        ({}, None),
        ({"thinking": ""}, "no trace"),
        ({"thinking": None}, "no trace"),
        ({"attempt": "  "}, "no attempt"),
        ({"solution": None, "answer": ""}, "no reference"),
        ({"solution": None}, None),  # a short answer is reference enough
        ({"answer": None}, None),  # so is a solution
        ({"trace_error": "teacher call failed", "thinking": None}, "teacher call failed"),
    ],
)
def test_row_rules(values, rule):
    assert row_rule(_row(**values)) == rule


# ----------------------------------------------------------------------------------- decontamination
def _math500() -> list[str]:
    return [json.loads(line)["problem"] for line in (DATA / "math500.jsonl").open()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(tmp_path: Path, sources: list[dict], **extra) -> Path:
    config = {
        "output": str(tmp_path / "run"),
        "sources": sources,
        "eval_sets": ["math500"],
        "data_dir": str(DATA),
        **extra,
    }
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _rows(output: Path) -> dict[str, dict]:
    with Store(output) as store:
        return {r["id"]: dict(r) for r in store.rows()}


def test_decontamination_catches_planted_math500_problems(tmp_path):
    clean = [json.loads(line) for line in (DATA / "olympiadbench.jsonl").open()][:40]
    minerva = [json.loads(line) for line in (DATA / "minerva_math.jsonl").open()][:20]
    long_ones = [p for p in _math500() if len(p.split()) >= 30][:4]
    short = next(p for p in _math500() if len(p.split()) < 8)
    words = long_ones[2].split()
    planted = {
        "verbatim": long_ones[0],
        "case and spacing": "  " + long_ones[1].upper().replace(" ", "   \n ") + "\n",
        "last word changed": " ".join(words[:-1] + ["banana"]),
        "prefixed": "Here is a problem from a contest. " + long_ones[3],
        "short verbatim": short,
    }
    pool = [{"id": f"o{r['id']}", "question": r["question"], "answer": r["final_answer"]} for r in clean]
    pool += [{"id": f"planted-{name}", "question": text, "answer": "1"} for name, text in planted.items()]
    source = _write_jsonl(tmp_path / "pool.jsonl", pool)
    other = _write_jsonl(
        tmp_path / "minerva.jsonl", [{"problem": r["problem"], "solution": r["solution"]} for r in minerva]
    )
    config = load_config(
        _config(tmp_path, [{"name": "pool", "path": str(source)}, {"name": "minerva", "path": str(other)}])
    )
    run(config, ["collect", "decontaminate"], show_progress=False, say=lambda s: None)
    rows = _rows(tmp_path / "run")
    for name in planted:
        row = rows[f"pool/planted-{name}"]
        assert (row["dropped_by"], row["drop_rule"]) == ("decontaminate", "eval:math500"), name
    kept = [r for r in rows.values() if not r["id"].startswith("pool/planted")]
    assert len(kept) == 60 and all(r["dropped_by"] is None for r in kept)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["stages"][1]["rules"] == {"eval:math500": len(planted)}
    assert report["stages"][1]["per_source"] == {"pool": 40, "minerva": 20}


def test_duplicates_and_cross_source_overlap(tmp_path):
    a = "A frog sits at the origin of the plane and jumps one unit each minute in a random direction; find the chance."
    b = "Count the ways to tile a two by ten board with dominoes, where rotations are considered different tilings."
    first = _write_jsonl(tmp_path / "a.jsonl", [{"question": a, "answer": "1"}, {"question": b, "answer": "2"}])
    second = _write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"question": a, "answer": "1"},  # exact duplicate of an earlier row
            {"question": "Hint: count the ways to tile a two by ten board with dominoes, quickly.", "answer": "3"},
            {"question": "What is the remainder when 7^100 is divided by 13?", "answer": "9"},
        ],
    )
    questions = tmp_path / "mine.jsonl"
    _write_jsonl(questions, [{"question": "What is the remainder when 7^100 is divided by 13?"}])
    config = load_config(
        _config(
            tmp_path,
            [{"name": "A", "path": str(first)}, {"name": "B", "path": str(second)}],
            eval_sets=[str(questions)],
        )
    )
    run(config, ["collect", "decontaminate"], show_progress=False, say=lambda s: None)
    rows = _rows(tmp_path / "run")
    assert (rows["B/0"]["dropped_by"], rows["B/0"]["drop_rule"]) == ("collect", "duplicate")
    assert (rows["B/1"]["dropped_by"], rows["B/1"]["drop_rule"]) == ("decontaminate", "overlaps source A")
    assert rows["B/2"]["drop_rule"] == "eval:mine"  # an evaluation set given as a file
    assert rows["A/0"]["dropped_by"] is None and rows["A/1"]["dropped_by"] is None

    # collecting again adds nothing and changes no verdict
    run(config, ["collect", "decontaminate"], show_progress=False, say=lambda s: None)
    assert _rows(tmp_path / "run") == rows
    status = subprocess.run(
        [sys.executable, "-m", "s1", "curate", "status", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0
    assert (
        "5 questions in the pool" in status.stdout and "decontaminate  dropped       2  left       2" in status.stdout
    )


# ----------------------------------------------------------------------------------------- selection
def test_domains_are_drawn_uniformly_while_they_last():
    candidates = [Candidate(f"{d}-{i}", d, i) for d in "ABCDE" for i in range(200)]
    counts = Counter(c[0] for c in select(candidates, 500, "s1", seed=1))
    assert set(counts) == set("ABCDE") and all(80 <= n <= 120 for n in counts.values()), counts

    candidates = [Candidate(f"S-{i}", "S", i) for i in range(10)] + [
        Candidate(f"{d}-{i}", d, i) for d in "XYZ" for i in range(300)
    ]
    counts = Counter(c[0] for c in select(candidates, 400, "s1", seed=2))
    assert counts["S"] == 10  # a small domain is used up ...
    assert all(110 <= counts[d] <= 150 for d in "XYZ"), counts  # ... and the others share the rest evenly


def test_within_a_domain_rank_r_is_drawn_with_weight_two_to_minus_r():
    lengths = [5, 90, 40, 70, 10, 60, 20, 80]  # rank 0 is the longest (90)
    candidates = [Candidate(f"q{i}", "D", n) for i, n in enumerate(lengths)]
    rank_of = {c.id: r for r, c in enumerate(sorted(candidates, key=lambda c: -c.length))}
    draws = 4000
    counts = Counter(rank_of[select(candidates, 1, "s1", seed=s)[0]] for s in range(draws))
    expected = np.exp2(-np.arange(8)) / np.exp2(-np.arange(8)).sum() * draws
    observed = np.array([counts[r] for r in range(8)])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 24.3, (observed, expected.round())  # 7 degrees of freedom, p = 0.001
    assert counts[0] > counts[1] > counts[2] > counts[3]


def test_preselected_questions_are_always_in_and_first():
    candidates = [Candidate(f"{d}-{i}", d, i) for d in "AB" for i in range(50)]
    pre = ["A-3", "B-7", "A-0"]
    for seed in range(20):
        chosen = select(candidates, 10, "s1", seed=seed, preselected=pre)
        assert chosen[:3] == pre and len(chosen) == 10 == len(set(chosen))
    with pytest.raises(UserError, match="more than n = 2"):
        select(candidates, 2, "s1", preselected=pre)


def test_ablation_strategies():
    candidates = [Candidate(f"{d}-{i}", d, (i * 37) % 101) for d in "ABC" for i in range(40)]
    longest = select(candidates, 5, "longest")
    assert [c.length for c in candidates if c.id in longest] and sorted(
        (c.length for c in candidates if c.id in longest), reverse=True
    ) == sorted((c.length for c in candidates), reverse=True)[:5]
    for strategy in ("s1", "random", "diverse"):
        assert select(candidates, 30, strategy, seed=3) == select(candidates, 30, strategy, seed=3)
        assert select(candidates, 30, strategy, seed=3) != select(candidates, 30, strategy, seed=4)
    diverse = Counter(c[0] for c in select(candidates, 60, "diverse", seed=0))
    assert all(12 <= n <= 28 for n in diverse.values()), diverse
    assert sorted(select(candidates, 500, "s1")) == sorted(c.id for c in candidates)  # fewer than n: all of them


# ------------------------------------------------------------------------------------ hostile config
def _load(tmp_path: Path, text: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


GOOD_SOURCE = f"sources: [{{name: a, path: {DATA / 'amc23.jsonl'}}}]\noutput: out\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("sources: [\n", "not valid YAML near line"),
        ("- a\n- b\n", "must be a YAML mapping"),
        (GOOD_SOURCE + "sourcez: []\n", "sourcez is not a setting s1 curate knows"),
        ("output: out\nsources: [{name: a}]\n", "needs exactly one of path"),
        ("output: out\nsources: [{name: a, path: x.jsonl}, {name: a, path: y.jsonl}]\n", "two sources are named 'a'"),
        (GOOD_SOURCE + "selection: {n: -3}\n", "selection.n"),
        (GOOD_SOURCE + "selection: {strategy: best}\n", "selection.strategy"),
        (GOOD_SOURCE + "roles: {teacher: {engine: vllm}}\n", "roles.teacher.engine"),
        (GOOD_SOURCE + "roles: {solvers: []}\n", "roles.solvers"),
        (GOOD_SOURCE + "roles: {teacher: {engine: python, model: smollm2}}\n", "names its function as module:function"),
        (GOOD_SOURCE + "roles: {teacher: {engine: python, model: 'm:'}}\n", "names its function as module:function"),
        (
            f"sources: [{{name: a, path: {DATA / 'amc23.jsonl'}, fields: {{prompt: q}}}}]\noutput: out\n",
            "unknown pool field 'prompt'",
        ),
        (f"sources: [{{name: a, path: {DATA / 'amc23.jsonl'}}}]\n", "names no output directory"),
    ],
)
def test_bad_configs_are_one_sentence(tmp_path, text, message):
    with pytest.raises(UserError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bad_sources_are_one_sentence_at_collect(tmp_path):
    cases = [
        ({"name": "a", "path": "missing.jsonl"}, "file"),
        ({"name": "a", "path": str(DATA / "amc23.jsonl"), "fields": {"question": "nope"}}, "has no field 'nope'"),
        (
            {
                "name": "a",
                "path": str(
                    _write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "question": "x"}, {"id": 1, "question": "y"}])
                ),
            },
            "has id '1' twice",
        ),
    ]
    for source, message in cases:
        config = load_config(_config(tmp_path, [source]))
        with pytest.raises(UserError, match=message):
            run(config, ["collect"], show_progress=False, say=lambda s: None)
    with pytest.raises(UserError, match="Cannot read config"):
        load_config(tmp_path / "nothing.yaml")


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["status", "/nonexistent/run"], 1, "holds no curation run"),
        (["run", "/nonexistent/curate.yaml"], 1, "Cannot read config"),
        (["bogus-stage", "x.yaml"], 2, "No such command"),
        (["select"], 2, "Missing argument"),
    ],
)
def test_cli_errors(args, code, text):
    result = subprocess.run([sys.executable, "-m", "s1", "curate", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("Error:") and text in result.stderr and "Traceback" not in result.stderr


def test_rerunning_a_stage_keeps_later_stages_verdicts(tmp_path):
    """Re-running quality alone must not bring back a question difficulty dropped (nor one it dropped itself
    and would drop again), and must bring back one it no longer drops."""
    source = _write_jsonl(
        tmp_path / "pool.jsonl", [{"question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(3)]
    )
    config = load_config(_config(tmp_path, [{"name": "p", "path": str(source)}]))
    run(config, ["collect"], show_progress=False, say=lambda s: None)
    with Store(tmp_path / "run") as store:
        store.update(
            {
                "p/0": {"thinking": "t", "attempt": "a"},
                "p/1": {"thinking": "t", "attempt": "a"},
                "p/2": {"thinking": "t", "attempt": ""},
            }
        )
        store.set_drops("difficulty", {"p/0": "solved"}, ["p/0", "p/1", "p/2"])
        store.set_drops("quality", {"p/1": "no trace"}, ["p/1"])  # a stale verdict: p/1 has a trace now
    run(config, ["quality"], show_progress=False, say=lambda s: None)
    rows = _rows(tmp_path / "run")
    assert (rows["p/0"]["dropped_by"], rows["p/0"]["drop_rule"]) == ("difficulty", "solved")
    assert rows["p/1"]["dropped_by"] is None
    assert (rows["p/2"]["dropped_by"], rows["p/2"]["drop_rule"]) == ("quality", "no attempt")


def test_unknown_eval_set_is_one_sentence(tmp_path):
    source = _write_jsonl(tmp_path / "pool.jsonl", [{"question": "What is 1+1?", "answer": "2"}])
    config = load_config(_config(tmp_path, [{"name": "p", "path": str(source)}], eval_sets=["aime2099"]))
    with pytest.raises(UserError, match="neither a benchmark of s1 eval .* nor an existing file"):
        run(config, ["collect", "decontaminate"], show_progress=False, say=lambda s: None)


# ------------------------------------------------------------------------------- python roles
def _walk_pool(tmp_path: Path, n: int = 12) -> Path:
    from s1.demo import task

    problems = task.held_out(n, seed=5, min_steps=1)
    return _write_jsonl(
        tmp_path / "walks.jsonl",
        [{"id": i, "question": p.question, "answer": str(p.answer)} for i, p in enumerate(problems)],
    )


def _python_roles(teacher: str) -> dict:
    role = lambda target: {"engine": "python", "model": target}  # noqa: E731
    return {
        "teacher": role(teacher),
        "solvers": [role("s1.demo.task:solver")],
        "judge": role("s1.demo.task:solver"),
        "classifier": role("s1.demo.task:classifier"),
    }


def test_python_roles_run_every_stage_and_cache_their_calls(tmp_path):
    """A function in each role goes through the same call cache as a model: a re-run sends nothing."""
    domains = tmp_path / "domains.json"
    domains.write_text(json.dumps({"add": "Addition", "double": "Doubling", "square": "Squaring"}))
    config = load_config(
        _config(
            tmp_path,
            [{"name": "walks", "path": str(_walk_pool(tmp_path))}],
            eval_sets=[],
            roles=_python_roles("s1.demo.task:teacher"),
            domains=str(domains),
            student=str(tmp_path / "student"),
            selection={"n": 5},
        )
    )
    from s1.demo import tiny

    tiny.build(tmp_path / "student")
    run(config, show_progress=False, say=lambda s: None)
    rows = _rows(tmp_path / "run")
    assert all(r["thinking"].startswith("1: ") and r["attempt"].startswith("Answer: ") for r in rows.values())
    assert {r["domain"] for r in rows.values() if r["domain"]} <= {"add", "double", "square"}
    kept = [r for r in rows.values() if r["dropped_by"] is None]
    assert sum(1 for r in rows.values() if r["selected"] is not None) == min(5, len(kept)) > 0
    assert all(
        r["dropped_by"] == "difficulty" for r in rows.values() if r["dropped_by"]
    )  # solved: 1-2 steps or a lucky guess
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["calls"]["teacher"]["sent"] == 12
    run(config, show_progress=False, say=lambda s: None)
    again = json.loads((tmp_path / "run" / "report.json").read_text())
    assert again["calls"]["teacher"]["sent"] == 12 and again["calls"]["teacher"]["repeated"] == 0


@pytest.mark.parametrize(
    "target, message",
    [
        ("no_such_module_s1:f", "Cannot load the python role 'no_such_module_s1:f'"),
        ("json:no_such_function", "Cannot load the python role 'json:no_such_function'"),
        ("json:__doc__", "is not a function"),
    ],
)
def test_python_role_that_cannot_load_is_one_sentence(tmp_path, target, message):
    config = load_config(
        _config(
            tmp_path,
            [{"name": "walks", "path": str(_walk_pool(tmp_path, 2))}],
            eval_sets=[],
            roles=_python_roles(target),
        )
    )
    with pytest.raises(UserError) as caught:
        run(config, ["collect", "decontaminate", "traces"], show_progress=False, say=lambda s: None)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_python_role_that_fails_marks_its_calls_failed(tmp_path):
    """A function that raises or returns the wrong thing fails its own calls; the rows are dropped by rule."""
    config = load_config(
        _config(
            tmp_path,
            [{"name": "walks", "path": str(_walk_pool(tmp_path, 3))}],
            eval_sets=[],
            roles=_python_roles("json:dumps"),
        )
    )  # returns a string, not a reply
    run(config, ["collect", "decontaminate", "traces", "quality"], show_progress=False, say=lambda s: None)
    rows = _rows(tmp_path / "run")
    assert [r["drop_rule"] for r in rows.values()] == ["teacher call failed"] * 3
    with Store(tmp_path / "run") as store:
        assert store.call_stats()["teacher"]["failed"] == 3


def test_a_source_without_a_question_field_or_records_is_refused_by_name(tmp_path):
    """It used to exit 0 with 0 records and no message."""
    nameless = _write_jsonl(tmp_path / "nameless.jsonl", [{"problem_text": "What is 1+1?", "answer": "2"}])
    config = load_config(_config(tmp_path, [{"name": "mine", "path": str(nameless)}]))
    with pytest.raises(UserError, match="Source 'mine' has no question field.*problem_text"):
        run(config, ["collect"], show_progress=False, say=lambda s: None)
    (tmp_path / "empty.jsonl").write_text("")
    config = load_config(_config(tmp_path, [{"name": "void", "path": str(tmp_path / "empty.jsonl")}]))
    with pytest.raises(UserError, match="Source 'void' holds no records"):
        run(config, ["collect"], show_progress=False, say=lambda s: None)


def test_an_empty_pool_is_explained_in_the_terms_of_the_command_run(tmp_path):
    config = load_config(_config(tmp_path, [{"name": "a", "path": str(DATA / "amc23.jsonl")}]))
    with pytest.raises(UserError, match=r"`s1 curate quality` has nothing to work on; run `s1 curate collect`"):
        run(config, ["quality"], show_progress=False, say=lambda s: None)
    with pytest.raises(UserError) as caught:
        run(config, ["decontaminate", "quality"], show_progress=False, say=lambda s: None)
    assert "`s1 curate decontaminate quality`" in str(caught.value)


def test_a_missing_answer_stays_missing_in_the_pool(tmp_path):
    """A NaN (Parquet, pandas) or null answer is no reference: never the text "nan" or "None"."""
    from s1.curate.collect import pool_rows
    from s1.curate.config import Source

    raw = [
        {"question": "q1", "answer": float("nan")},
        {"question": "q2", "answer": None},
        {"question": "q3", "answer": 3},
    ]
    rows = pool_rows(Source(name="s", path="x.jsonl"), raw, 0)
    assert [r["answer"] for r in rows] == [None, None, "3"]


def test_a_store_the_system_refuses_to_grow_says_why_in_one_sentence(tmp_path):
    """SQLite words every refused write "disk I/O error"; the sentence says what that means and what to do
    (a file-size limit is the portable stand-in for a full disk)."""
    import os
    import resource
    import signal

    config = _config(tmp_path, [{"name": "m", "path": str(DATA / "math_cot_100.jsonl")}])

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    run_ = subprocess.run(
        [sys.executable, "-m", "s1", "curate", "collect", str(config)],
        capture_output=True,
        text=True,
        preexec_fn=limited,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        timeout=300,
    )
    assert run_.returncode == 1 and "Traceback" not in run_.stderr, run_.stderr[-3000:]
    errors = [line for line in run_.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "curate.sqlite" in errors[0], run_.stderr
    assert "the system refused a write (a full disk, the file size limit" in errors[0]
    assert "free some space or raise the limit" in errors[0]
