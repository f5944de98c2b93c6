"""The grader against 800 real responses with a reference grader's verdicts, and its edge cases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from s1.grading import Grader, extract, last_boxed

FIXTURE = Path(__file__).parent / "fixtures" / "grading_disagreements.json"


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout=5) as g:
        yield g


def test_agrees_with_reference_verdicts_on_800_real_responses(grader, data_dir):
    rows = [json.loads(line) for line in (data_dir / "math_cot_100.jsonl").read_text().splitlines()]
    items, keys, reference = [], [], []
    for row in rows:
        for k, (response, verdict) in enumerate(zip(row["code"], row["score"])):
            items.append(("math", row["gt"], response))
            keys.append(f"{row['idx']}/{k}")
            reference.append(bool(verdict))
    assert len(items) == 800
    grades = grader.grade_many(items)
    disagree = {key: g for key, g, ref in zip(keys, grades, reference) if g.correct != ref}
    agreement = 1 - len(disagree) / len(items)
    assert agreement >= 0.97
    listed = json.loads(FIXTURE.read_text())["disagreements"]
    assert set(disagree) == set(listed), "every disagreement must be explained in the fixture"
    for key, g in disagree.items():
        assert g.correct == listed[key]["ours"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{\\frac{1}{2}} and then \\boxed{\\frac{\\sqrt{3}}{2}}.", "\\frac{\\sqrt{3}}{2}"),
        ("We get \\boxed{ {a}^{2} } done", "{a}^{2}"),
        ("Final Answer: 56.", "56"),
        ("Answer: $x = 3$\nmore words\nFinal Answer: $\\frac{3}{4}$", "\\frac{3}{4}"),
        ("nothing here", None),
    ],
)
def test_extraction_takes_last_boxed_else_last_answer_line(text, expected):
    assert extract(text)[0] == expected


def test_unbalanced_box_is_not_an_answer():
    assert last_boxed("\\boxed{12") is None


@pytest.mark.parametrize(
    "kind, gold, text, correct",
    [
        ("math", "\\frac{1}{2}", "Final Answer: 0.5", True),
        ("math", "\\left( 3, \\frac{\\pi}{2} \\right)", "thus \\boxed{(3, \\frac{\\pi}{2})}", True),
        ("math", "\\text{Evelyn}", "Final Answer: Evelyn", True),
        ("math", "3", "\\boxed{4}", False),
        ("integer", "25", "the answer is \\boxed{025}", True),
        ("integer", "204", "Final Answer: 204", True),
        ("integer", "204", "Final Answer: 240", False),
        ("choice", "C", "Final Answer: (C) 4.2 eV", True),
        ("choice", "C", "\\boxed{B}", False),
    ],
)
def test_grades_by_kind(grader, kind, gold, text, correct):
    g = grader.grade(kind, gold, text)
    assert g.correct is correct, g.reason
    assert g.reason


def test_aime_artefact_does_not_break_grading(grader, data_dir):
    """AIME24 problem 71 holds a backspace where '\\b' of '\\begin' was read."""
    row = next(json.loads(l) for l in (data_dir / "aime24_nofigures.jsonl").read_text().splitlines() if json.loads(l)["id"] == 71)
    assert "\x08egin" in row["problem"]
    g = grader.grade("integer", row["answer"], row["problem"] + "\nFinal Answer: " + row["answer"])
    assert g.correct


def test_pathological_expression_cannot_hang_the_run():
    """A hung or crashed worker is killed at the deadline; the sample is counted wrong, the next one graded."""
    with Grader(timeout=2) as g:
        start = time.perf_counter()
        results = g.grade_many([("math", "1", "\\boxed{" + "(" * 30000 + "1" + ")" * 30000 + "}"), ("math", "2", "\\boxed{2}")])
        assert time.perf_counter() - start < 60
    assert results[0].correct is False and "timed out" in results[0].reason
    assert results[1].correct is True
