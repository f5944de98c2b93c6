"""The report files of one run directory, drawn from its summary: summary.md (the tables and what each
number means) and scaling.png (accuracy against thinking tokens, one line per method and benchmark).

`s1 eval` and `s1 demo` call this after the evaluation, which only writes summary.json: evaluation
never draws (README: "Evaluate test-time scaling").
"""

from __future__ import annotations

from pathlib import Path

from s1.core.rundir import write_atomic
from s1.evaluate.methods import METHODS
from s1.evaluate.records import Summary
from s1.report.markdown import summary_markdown
from s1.report.plots import method_points, scaling_plot


def write_run_report(run: str | Path, summary: Summary) -> str:
    """Write summary.md and scaling.png into the run directory; returns the Markdown."""
    run = Path(run)
    text = summary_markdown(summary)
    write_atomic(run / "summary.md", text)
    total = summary.config.get("plot_tokens") == "total"
    x = "mean_total_tokens" if total else "mean_thinking_tokens"
    several = len(summary.benchmarks) > 1
    curves = [
        (f"{name}: {method}" if several else method, method_points(bench.settings, method, x))
        for name, bench in summary.benchmarks.items()
        for method in bench.methods
    ]
    searched = any(m in METHODS and METHODS[m].search for m in summary.methods())
    xlabel = (
        "tokens processed (prompt, generated, reward model)"
        if total
        else "generated tokens (search: all trajectories of a problem)"
        if searched
        else None
    )
    title = f"{summary.model}: {', '.join(summary.benchmarks)}"
    scaling_plot(curves, run / "scaling.png", title=title, xlabel=xlabel)
    return text
