"""`s1 report`: several run directories side by side, and all their curves on one plot."""

from __future__ import annotations

import json
from pathlib import Path

from s1.core.errors import UserError
from s1.evaluate.records import Summary, parse_summary
from s1.report.markdown import cell
from s1.report.paper import paper_accuracy, paper_metrics, read_paper
from s1.report.plots import method_points, scaling_plot


class _NotJSON(Exception):
    """NaN or Infinity in a file: Python's json module reads them, the JSON standard (and other readers) do not."""


def _not_json(constant: str):
    raise _NotJSON(constant)


def load_summary(run: str) -> Summary:
    """A run directory's summary.json, read through its types (one sentence when it cannot be)."""
    path = Path(run) / "summary.json"
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text, parse_constant=_not_json)
    except _NotJSON as exc:
        raise UserError(
            f"{path} holds {exc}, which is not JSON; re-run s1 eval on {run} to rewrite the summary (undefined "
            "numbers are written as null)."
        ) from None
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{run} has no summary.json; point s1 report at a directory written by s1 eval.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} cannot be read as JSON; re-run s1 eval on {run} to rewrite the summary.") from None
    try:
        return parse_summary(text)
    except ValueError:
        raise UserError(f"{path} is not an s1 eval summary; re-run s1 eval on {run} to rewrite it.") from None


def compare(runs: list[str], plot: str | Path) -> str:
    """Markdown: one accuracy table with a column per run, then the metrics of every run's methods; where a run
    was made from a recipe with the paper's numbers (paper.json), a "paper" column beside them."""
    if not runs:
        raise UserError("Name at least one run directory.")
    summaries = [load_summary(r) for r in runs]
    papers = [read_paper(r) for r in runs]
    names = [Path(r).name for r in runs]
    rows: dict[tuple, dict[int, str]] = {}
    for i, summary in enumerate(summaries):
        for bench, data in summary.benchmarks.items():
            for r in data.settings:
                cut = f", {r.cut_answers} cut" if r.cut_answers else ""  # answers a token limit stopped
                rows.setdefault((bench, r.method, r.setting), {})[i] = (
                    f"{cell(r.accuracy)} ({cell(r.mean_thinking_tokens, '.0f')} tok{cut})"
                )
    paper = any(papers)
    extra = " paper |" if paper else ""
    lines = [
        "| benchmark | method | setting | " + " | ".join(names) + " |" + extra,
        "|---|---|---|" + "---|" * (len(names) + paper),
    ]
    for (bench, method, setting), cells in rows.items():
        found = [paper_accuracy(p, bench, method, setting) for p in papers]
        number = next((f"{v:g}" for v in found if v is not None), "–")
        lines.append(
            f"| {bench} | {method} | {setting} | "
            + " | ".join(cells.get(i, "–") for i in range(len(names)))
            + " |"
            + (f" {number} |" if paper else "")
        )
    lines += [
        "",
        "| run | benchmark | method | Control % | strict control % | Scaling (pts / 1k tok) | Scaling (pts / doubling) "
        "| Performance % |" + (" paper Control / Scaling / Performance |" if paper else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if paper else ""),
    ]

    def f(v, spec=".1f"):
        return "–" if v is None else format(v, spec)

    curves = []
    for name, summary, numbers in zip(names, summaries, papers):
        for bench, data in summary.benchmarks.items():
            for method, m in data.methods.items():
                lines.append(
                    f"| {name} | {bench} | {method} | {f(m.control)} | {f(m.strict_control)} | "
                    f"{f(m.scaling_per_1k_tokens, '.2f')} | {f(m.scaling_per_doubling, '.2f')} | {f(m.performance)} |"
                    + (f" {paper_metrics(numbers, bench, method)} |" if paper else "")
                )
                curves.append((f"{name} · {bench} · {method}", method_points(data.settings, method)))
    scaling_plot(curves, plot, title="s1 report")
    sources = [
        f"- {n}: {p['source']}" + (f" ({p['note']})" if p.get("note") else "")
        for n, p in zip(names, papers)
        if p.get("source")
    ]
    if sources:
        lines += ["", "paper: the numbers each run's recipe should reproduce, from"] + sources
    return "\n".join(lines) + "\n"
