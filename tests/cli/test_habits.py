"""What users bring from other tools: `--version`, shell completion, help that lists every method, and a
stdout that holds only the result (`s1 eval ... > out.md`), with lm-eval's stock gsm8k task run as it is."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s1.core.version import __version__
from s1.evaluate.methods import METHODS


def s1(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    full = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="2000", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "s1", *args], capture_output=True, text=True, timeout=timeout, env=full
    )


def test_version_prints_the_package_version():
    run = s1("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"s1 {__version__}\n"


def test_shell_completion_completes_commands_and_options():
    """click's bash protocol, under the name `s1` even when run as `python -m s1`."""
    commands = s1(env={"_S1_COMPLETE": "complete_bash", "COMP_WORDS": "s1 ev", "COMP_CWORD": "1"})
    assert commands.returncode == 0, commands.stderr
    assert commands.stdout.split() == ["eval"]
    options = s1(env={"_S1_COMPLETE": "complete_bash", "COMP_WORDS": "s1 eval --meth", "COMP_CWORD": "2"})
    assert options.stdout.split() == ["--method"]
    # the script `s1 --install-completion` installs, asked for one shell (no detection of the parent shell)
    script = s1(env={"_S1_COMPLETE": "source_bash"})
    assert script.returncode == 0 and "_s1_completion" in script.stdout and "_S1_COMPLETE" in script.stdout


def test_method_help_lists_every_method():
    run = s1("eval", "--help")
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if "--method" in line)
    listed = line.split("any of:")[1].split(".")[0].strip().split(", ")
    assert listed == list(METHODS)


@pytest.mark.slow
def test_lm_evals_stock_gsm8k_runs_and_stdout_holds_only_the_table(data_dir, tmp_path, embedded):
    """lm-eval's own gsm8k.yaml, as installed, on the shared data (its hub id maps to the local file): 5-shot
    prompts, the gold cut by the metric's regexes_to_ignore, the table alone on stdout, lm-eval's results file."""
    lm_eval = pytest.importorskip("lm_eval")
    task = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    out = tmp_path / "run"
    run = s1(
        "eval", "--benchmark", str(task), "--data-dir", str(data_dir), "--limit", "2", "--max-thinking-tokens", "4",
        "--max-answer-tokens", "4", "--output", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == (out / "summary.md").read_text().strip()
    assert "━" in run.stderr and "━" not in run.stdout  # the progress bar went to stderr
    assert "generation_kwargs.until" in run.stderr  # superseded fields are said once
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["gold"] for s in samples) == ["18", "3"]
    assert all(s["prompt"].count("Question:") == 6 for s in samples)  # five examples, then the question
    [results] = out.glob("results_*.json")
    document = json.loads(results.read_text())
    assert {"results", "configs", "versions", "n-samples", "git_hash", "date"} <= set(document)
    [key] = [k for k in document["results"]["gsm8k"] if k.startswith("exact_match,")]
    assert key == "exact_match,budget_forcing cap=4 wait=0"
    assert document["configs"]["gsm8k"]["num_fewshot"] == 5 and document["versions"]["gsm8k"] == 3.0
    assert document["n-samples"]["gsm8k"]["effective"] == 2 and document["n-shot"]["gsm8k"] == 5


@pytest.mark.parametrize("tracker", ["wandb", "tensorboard"])
def test_report_to_a_tracker_that_is_not_installed_is_one_sentence_before_any_work(tracker, tmp_path):
    if importlib.util.find_spec(tracker) is not None:
        pytest.skip(f"{tracker} is installed here")
    out = tmp_path / "run"
    run = s1("eval", "--benchmark", "gsm8k", "--limit", "1", "--report-to", tracker, "--output", str(out))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"Error: --report-to {tracker} needs the {tracker} package, which is not installed; pip install {tracker}, "
        "or leave --report-to out."
    )
    assert not out.exists()  # nothing ran


def test_report_to_an_unknown_tracker_names_the_choices():
    run = s1("eval", "--report-to", "mlflow")
    assert run.returncode == 1 and "--report-to must be one of none, wandb, tensorboard" in run.stderr
