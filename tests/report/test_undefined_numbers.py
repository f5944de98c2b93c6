"""An undefined number (a setting with no sample counted has no accuracy) is `null` in summary.json, since NaN
is not JSON; reports show it as n/a, and `s1 report` refuses a summary.json that holds NaN in one sentence."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

from s1.evaluate.records import parse_summary
from s1.report.compare import compare
from s1.report.html import render
from s1.report.markdown import summary_markdown

RUN = Path(__file__).parents[1] / "fixtures" / "eval_run_b86fcda" / "run"


def _strict(text: str):
    """The JSON standard's reading: NaN and Infinity are not numbers of it."""
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def _run_with(tmp_path: Path, accuracy: str) -> Path:
    """The fixture's run directory with its first setting's accuracy written as `accuracy` (JSON text)."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    document = json.loads((run / "summary.json").read_text())
    document["benchmarks"]["two_math"]["settings"][0]["accuracy"] = "ACCURACY"
    (run / "summary.json").write_text(json.dumps(document).replace('"ACCURACY"', accuracy))
    return run


def test_an_undefined_accuracy_is_written_as_null_and_shown_as_na(tmp_path):
    summary = parse_summary((RUN / "summary.json").read_text())
    row = summary.benchmarks["two_math"].settings[0]
    row.accuracy = row.mean_thinking_tokens = float("nan")
    written = _strict(summary.to_text())
    first = written["benchmarks"]["two_math"]["settings"][0]
    assert first["accuracy"] is None and first["mean_thinking_tokens"] is None
    again = parse_summary(summary.to_text()).benchmarks["two_math"].settings[0]
    assert math.isnan(again.accuracy) and math.isnan(again.mean_thinking_tokens)
    assert f"| {row.method} | {row.setting} | {row.samples} | n/a | n/a (" in summary_markdown(summary)

    run = _run_with(tmp_path, "null")
    text = compare([str(run)], tmp_path / "r.png")
    assert f"| two_math | {row.method} | {row.setting} | n/a (" in text and "nan" not in text
    assert "<td>n/a (" in render([str(run)])


def test_s1_report_refuses_a_summary_holding_nan_in_one_sentence(tmp_path):
    for constant in ("NaN", "Infinity"):
        run = _run_with(tmp_path / constant, constant)
        result = subprocess.run(
            [sys.executable, "-m", "s1", "report", str(run), "--plot", str(tmp_path / "r.png")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode != 0 and "Traceback" not in result.stderr
        words = " ".join(result.stderr.split())
        assert f"holds {constant}, which is not JSON; re-run s1 eval on {run}" in words, result.stderr


def test_an_undefined_interval_reads_back_undefined_and_an_absent_one_stays_absent():
    summary = parse_summary((RUN / "summary.json").read_text())
    row = summary.benchmarks["two_math"].settings[0]
    row.ci_low = row.ci_high = float("nan")
    again = parse_summary(summary.to_text()).benchmarks["two_math"].settings[0]
    assert math.isnan(again.ci_low) and math.isnan(again.ci_high)  # the page draws the row without a bar
    document = _strict(summary.to_text())
    for key in ("ci_low", "ci_high"):
        del document["benchmarks"]["two_math"]["settings"][0][key]
    assert parse_summary(json.dumps(document)).benchmarks["two_math"].settings[0].ci_low is None
