"""Benchmark loaders on the shared real data, GPQA on a made-up CSV in the official layout."""

from __future__ import annotations

import csv

import pytest

from s1 import UserError
from s1.benchmarks import gpqa_problem, load_benchmark

GPQA_COLUMNS = ["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]


@pytest.fixture
def gpqa_dir(tmp_path):
    rows = [
        ["rec1", "Which particle carries the electromagnetic force?", "photon", "gluon", "W boson", "graviton"],
        ["rec2", "What is the pH of pure water at 25 C?", "7", "1", "14", "0"],
        ["rec3", "Which element has atomic number 6?", "carbon", "nitrogen", "oxygen", "boron"],
    ]
    with open(tmp_path / "gpqa_diamond.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GPQA_COLUMNS)
        writer.writerows(rows)
    return tmp_path


def test_named_benchmarks_from_the_shared_data(data_dir):
    aime24 = load_benchmark("aime24", data_dir=data_dir)
    assert len(aime24) == 30 and aime24[0].kind == "integer" and aime24[0].answer == "204"
    assert len(load_benchmark("aime25", data_dir=data_dir)) == 30
    math500 = load_benchmark("math500", data_dir=data_dir)
    assert len(math500) == 500 and math500[0].kind == "math" and math500[0].id.startswith("test/")
    assert math500[0].question.startswith("Convert the point")  # the bare question, as s1 prompts


def test_limit_and_ids(data_dir):
    assert [p.id for p in load_benchmark("aime24", data_dir=data_dir, limit=3)] == ["60", "61", "62"]
    assert [p.id for p in load_benchmark("aime24", data_dir=data_dir, ids=["71", "62"])] == ["62", "71"]
    with pytest.raises(UserError, match="No problems with ids"):
        load_benchmark("aime24", data_dir=data_dir, ids=["nope"])


def test_environment_variable_names_the_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv("S1_DATA_DIR", str(data_dir))
    assert len(load_benchmark("aime25")) == 30


def test_gpqa_choices_are_shuffled_by_a_fixed_seed_and_graded_by_letter(gpqa_dir):
    problems = load_benchmark("gpqa", data_dir=gpqa_dir)
    again = load_benchmark("gpqa", data_dir=gpqa_dir)
    assert [p.question for p in problems] == [p.question for p in again]
    for p in problems:
        assert p.kind == "choice" and p.answer in "ABCD"
        lines = p.question.splitlines()[-4:]
        assert [line[:3] for line in lines] == ["A) ", "B) ", "C) ", "D) "]
        correct_text = {"rec1": "photon", "rec2": "7", "rec3": "carbon"}[p.id]
        assert lines["ABCD".index(p.answer)] == f"{p.answer}) {correct_text}"
    # the order is not always "correct first": the seed really shuffles
    assert {p.answer for p in problems} != {"A"}


def test_gpqa_row_without_official_columns_is_a_clear_error():
    with pytest.raises(UserError, match="official columns"):
        gpqa_problem({"question": "x"}, 0)


def test_generic_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text('{"q": "1+1?", "a": "2", "id": "x"}\n{"q": "2+2?", "a": "4", "id": "y"}\n')
    problems = load_benchmark(data=jsonl, question_field="q", answer_field="a", answer_kind="integer")
    assert [(p.id, p.answer, p.kind) for p in problems] == [("x", "2", "integer"), ("y", "4", "integer")]
    table = tmp_path / "mine.csv"
    table.write_text("question,answer\nWhat is 3*3?,9\n")
    [p] = load_benchmark(data=table)
    assert p.question == "What is 3*3?" and p.answer == "9" and p.kind == "math"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(name="nope"), "Unknown benchmark"),
        (dict(name="aime24", data_dir="/no/such/dir"), "does not exist"),
        (dict(data="/no/such/file.jsonl"), "Cannot read data file"),
    ],
)
def test_bad_benchmark_input_is_one_clear_error(kwargs, words):
    with pytest.raises(UserError, match=words):
        load_benchmark(**kwargs)
