"""The paper as recipes (issue 29): `s1 eval --config FILE` takes the command's own options as YAML keys, the
command line overrides them, unknown keys are one sentence listing them all; every recipe in configs/paper/
runs end to end on the tiny model with small limits, and `s1 report` prints the paper's numbers beside the
run's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from s1.cli.common import app
from s1.report.compare import compare
from s1.report.html import render
from tests.evaluate.test_evaluate import s1

RECIPES = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "configs" / "paper").glob("*.yaml") if "table2-" not in p.name
)
"""`s1 eval` recipes; Table 2's are `s1 curate` configs (tests/curate/test_paper_config.py)."""
SMALL = ["--benchmark", "aime24", "--limit", "1", "--max-answer-tokens", "2", "--max-tokens", "24"]
"""Small limits for every recipe: one AIME24 problem, 24 tokens at most per sample."""
PER_METHOD = {
    "majority": ["--samples", "2"],
    "majority+no_thinking": ["--samples", "2"],
    "rebase": ["--width", "2", "--max-step-tokens", "4", "--max-depth", "2", "--reward-model", f"{__name__}:length"],
    "rejection_sampling": ["--max-tries", "2"],
}


def length(question: str, steps: list[str]) -> float:
    """A programmatic reward for REBASE in the test: longer last steps score higher."""
    return len(steps[-1]) / 100


def test_the_paper_folder_has_a_recipe_per_experiment():
    names = {p.stem for p in RECIPES}
    assert {"figure1-sequential-scaling", "table3-control-methods", "figure4-parallel-majority"} <= names
    assert {"figure7-rebase", "sequence-length-ablation", "table4-extension-wait", "table3-step-conditional"} <= names
    for path in RECIPES:
        text = path.read_text()
        assert "read from arXiv 2501.19393v3" in yaml.safe_load(text)["paper"]["note"], (
            f"{path.name} says which version of the paper its numbers were read from"
        )
        assert "paper" in yaml.safe_load(text)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_each_recipe_runs_end_to_end_and_the_report_shows_the_paper_column(recipe, tmp_path, tiny_dir, data_dir):
    keys = yaml.safe_load(recipe.read_text())
    methods = keys["method"].split(",")
    small = SMALL + [a for m in methods for a in PER_METHOD.get(m, [])]
    if keys.get("max_thinking_tokens") != ["none"]:
        small += ["--max-thinking-tokens", "8,16"]
    if "steps" in keys:
        small += ["--steps", "1,2", "--tokens-per-step", "8"]
    run = tmp_path / "run"
    args = ["eval", "--config", str(recipe), "--model", str(tiny_dir), "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args + small + ["--output", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["benchmarks"]["aime24"]["methods"]) == set(methods)
    assert json.loads((run / "paper.json").read_text()) == keys["paper"]
    text = compare([str(run)], tmp_path / "report.png")
    assert "| paper |" in text.splitlines()[0] and "paper Control / Scaling / Performance" in text
    assert keys["paper"]["source"] in text
    assert "<th>paper Control / Scaling / Performance</th>" in render([str(run)])
    paper = keys["paper"]["benchmarks"].get("aime24", {})
    for method, numbers in (paper.get("methods") or {}).items():
        cells = " / ".join(
            format(numbers[k], "g") if k in numbers else "–" for k in ("control", "scaling", "performance")
        )
        assert f"| run | aime24 | {method} |" in text and f" {cells} |" in text
    for label, accuracy in (paper.get("settings") or {}).items():
        method, setting = label.split(" ", 1)
        assert f"| aime24 | {method} | {setting} |" in text and text.count(f" {accuracy:g} |") >= 1


def test_config_keys_are_the_commands_options_and_flags_override_them(tmp_path, tiny_dir):
    data = tmp_path / "one.jsonl"
    data.write_text('{"id": "a", "question": "What is 2+3?", "answer": "5"}\n')
    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"data: {data}\nmodel: {tiny_dir}\nmax_thinking_tokens: [4, 8]\nmax_answer_tokens: 2\nnum_ignore: 0\n"
        "output: never-used\n"
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["eval", "--config", str(config), "--max-thinking-tokens", "6", "--output", str(run)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads((run / "summary.json").read_text())["benchmarks"]["one"]["settings"]
    assert [r["setting"] for r in rows] == ["cap=6 wait=0"], "the flag overrides the file's list"
    assert not (tmp_path / "never-used").exists() and not (run / "paper.json").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "max_thinking_tokenz: [1]\nbenchmarkz: aime24\nlimit: 1\n",
            "not options of s1 eval: max_thinking_tokenz, benchmarkz",
        ),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        ("limit: [1\n", "is not valid YAML at line"),
        ("limit: many\n", "limit"),
        ("paper: [1, 2]\n", "paper must be a mapping"),
        (
            "paper: {benchmarks: {aime24: {methods: {budget_forcing: {speed: 1}}}}}\n",
            "takes control, scaling, performance",
        ),
        ("max_thinking_tokens: {a: 1}\n", "takes a value or a list, not a mapping"),
    ],
)
def test_a_bad_config_file_is_one_sentence_and_a_nonzero_exit(tmp_path, text, words):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = s1("eval", "--config", str(config), "--output", str(tmp_path / "run"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert words in result.stderr.replace("\n", " "), result.stderr
    assert not (tmp_path / "run").exists()


def test_a_missing_config_file_is_named(tmp_path):
    result = s1("eval", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode != 0 and "nope.yaml does not exist" in result.stderr and "Traceback" not in result.stderr
