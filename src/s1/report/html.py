"""`s1 report --html`: one self-contained page per run or comparison.

The page holds the scaling plot (inline SVG), the per-setting table with 95% confidence intervals and
majority-voting columns, the Control / Scaling / Performance metrics, and a sample browser: every
graded sample with its thinking, the parts budget forcing wrote highlighted (extensions, the forced end
and answer prefix, a completed delimiter), the extracted answer, the reference and the grader's reason.
Nothing is fetched when the page opens: styles, script and plot are in the file, so it can be mailed
or attached to a paper's supplement.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

from s1.core.errors import UserError
from s1.core.files import write_atomic
from s1.core.rundir import RunDir
from s1.evaluate.records import BenchmarkSummary, SampleRecord, Summary, SummaryRow, parse_record
from s1.report.compare import load_summary
from s1.report.markdown import cell, cut_of
from s1.report.paper import paper_metrics, read_paper
from s1.report.plots import method_points

MAX_SAMPLES = 2000
"""Samples per run shown in the browser, shared evenly among its settings (the first problems of each)."""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
FORCED_LABELS = {"extension": "extension (forced)", "forced_end": "forced end", "delimiter": "end completed"}


def _svg_plot(curves: list, title: str) -> str:
    """The scaling plot as inline SVG, drawn by the same function as scaling.png."""
    from s1.report.plots import scaling_plot

    buffer = io.BytesIO()
    scaling_plot(curves, buffer, title=title, format="svg")
    svg = buffer.getvalue().decode("utf-8")
    return svg[svg.find("<svg") :]


def _natural(text: str) -> list:
    """Sort key that puts problem 2 before problem 10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def _run_samples(run: str, summary: Summary) -> tuple[list[SampleRecord], int]:
    """The samples the summary counts (its context, benchmarks and settings) in the summary's setting order,
    then by problem; at most MAX_SAMPLES, shared evenly among the settings. Returns them and how many there were.
    Records that do not read as samples (search records, lines with wrong-typed fields) are not shown."""
    order = {
        (bench, r.method, r.setting): i
        for bench, data in summary.benchmarks.items()
        for i, r in enumerate(data.settings)
    }
    records = RunDir(run).records(parse_record) if (Path(run) / "samples.jsonl").exists() else {}
    picked = [
        r
        for r in records.values()
        if isinstance(r, SampleRecord)
        and (r.benchmark, r.method, r.setting) in order
        and (summary.context is None or r.context == summary.context)
    ]
    picked.sort(key=lambda r: (r.benchmark, order[(r.benchmark, r.method, r.setting)], _natural(r.id), r.sample))
    per_setting, shown, counts = max(1, MAX_SAMPLES // max(1, len(order))), [], {}
    for r in picked:
        key = (r.benchmark, r.method, r.setting)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= per_setting:
            shown.append(r)
    return shown, len(picked)


def _shown(value) -> str:
    return "none found" if value is None else str(value)


def _text(value) -> str:
    """Model text as HTML: escaped, with control characters shown as escapes instead of breaking the page."""
    return html.escape(CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value)))


def _highlight(output: str, forced: list) -> str:
    """The output as HTML with budget forcing's spans marked (spans that overlap or run past the end are skipped)."""
    parts, at = [], 0
    for kind, start, end in sorted(forced or [], key=lambda s: s[1]):
        if start < at or end > len(output) or start >= end:
            continue
        label = html.escape(FORCED_LABELS.get(kind, kind))
        parts.append(_text(output[at:start]))
        parts.append(f'<mark class="{html.escape(kind)}" title="{label}">{_text(output[start:end])}</mark>')
        at = end
    parts.append(_text(output[at:]))
    return "".join(parts)


def _ci_bar(row: SummaryRow) -> str:
    lo, hi, acc = row.ci_low, row.ci_high, row.accuracy
    if lo is None or hi is None or acc != acc:  # no interval, or no accuracy (NaN): nothing to draw
        return ""
    return (
        f'<span class="ci"><span class="range" style="left:{lo:.1f}%;width:{max(hi - lo, 0.5):.1f}%"></span>'
        f'<span class="point" style="left:{acc:.1f}%"></span></span>'
    )


def _settings_table(name: str, bench: BenchmarkSummary) -> str:
    rows = bench.settings
    voting = next((r for r in rows if r.maj_at_k is not None), None)
    ks = list(voting.maj_at_k) if voting else []
    cuts = any(r.cut_answers for r in rows)  # answers a token limit stopped (summary.md's list, as a column)
    head = (
        "<tr><th>method</th><th>setting</th><th>n</th><th>mean thinking tokens</th><th>accuracy % (95% CI)</th>"
        "<th></th><th>in control</th>"
        + ("<th>answers cut</th>" if cuts else "")
        + "".join(f"<th>maj@{k}</th>" for k in ks)
        + "</tr>"
    )
    body = []
    for r in rows:
        control = "–" if r.in_control is None else ("yes" if r.in_control else "no")
        votes = "".join(f"<td>{r.maj_at_k[k]:.1f}</td>" if r.maj_at_k and k in r.maj_at_k else "<td>–</td>" for k in ks)
        n = f"{r.samples}" + ("" if r.complete else f" ({r.problems} of {bench.problems})")
        body.append(
            f"<tr><td>{html.escape(r.method)}</td><td>{html.escape(r.setting)}</td><td>{n}</td>"
            f"<td>{cell(r.mean_thinking_tokens, '.0f')}</td>"
            f"<td>{cell(r.accuracy)} ({cell(r.ci_low)}–{cell(r.ci_high)})</td>"
            f"<td>{_ci_bar(r)}</td><td>{control}</td>"
            + (f"<td>{html.escape(cut_of(r)) if r.cut_answers else '–'}</td>" if cuts else "")
            + f"{votes}</tr>"
        )
    return (
        f"<h3>{html.escape(name)} <small>{bench.problems} problems</small></h3>"
        f'<div class="scroll"><table>{head}{"".join(body)}</table></div>' + _compute_table(bench)
    )


def _compute_table(bench: BenchmarkSummary) -> str:
    """Tokens per problem with the sweep shared and without (summary.md's compute table)."""
    rows = [(r.method, r.setting, r.compute) for r in bench.settings if r.compute is not None]
    if not rows:
        return ""
    if bench.compute is not None:
        rows.append(("run", "all settings", bench.compute))
    head = (
        "<tr><th>method</th><th>setting</th><th>generated tokens / problem: with sharing</th><th>without</th>"
        "<th>prompt tokens / problem: with sharing</th><th>without</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{html.escape(s)}</td><td>{c.generated:.0f}</td>"
        f"<td>{c.generated_alone:.0f}</td><td>{c.prompt:.0f}</td><td>{c.prompt_alone:.0f}</td></tr>"
        for m, s, c in rows
    )
    return f'<div class="scroll"><table>{head}{body}</table></div>'


def _metrics_table(summaries: list[tuple[str, Summary]], papers: list[dict]) -> str:
    """Control / Scaling / Performance per run and method; a "paper" column where a run came from a recipe
    with the paper's numbers (report/paper.py)."""

    def f(v, spec=".1f"):
        return "–" if v is None else format(v, spec)

    shown = any(papers)
    rows = []
    for (run, summary), numbers in zip(summaries, papers):
        for bench, data in summary.benchmarks.items():
            for method, m in data.methods.items():
                paper = f"<td>{html.escape(paper_metrics(numbers, bench, method))}</td>" if shown else ""
                rows.append(
                    f"<tr><td>{html.escape(run)}</td><td>{html.escape(bench)}</td><td>{html.escape(method)}</td>"
                    f"<td>{f(m.control)}</td><td>{f(m.strict_control)}</td><td>{f(m.scaling_per_1k_tokens, '.2f')}</td>"
                    f"<td>{f(m.scaling_per_doubling, '.2f')}</td><td>{f(m.performance)}</td>{paper}</tr>"
                )
    return (
        "<table><tr><th>run</th><th>benchmark</th><th>method</th><th>Control %</th><th>strict control %</th>"
        "<th>Scaling (points / 1k tokens)</th><th>Scaling (points / doubling)</th><th>Performance %</th>"
        + ("<th>paper Control / Scaling / Performance</th>" if shown else "")
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _sample_cards(run: str, samples: list[SampleRecord]) -> str:
    cards = []
    for number, r in enumerate(samples):
        verdict = "correct" if r.correct else "wrong"
        setting = f"{r.method} {r.setting}"
        flags = []
        if r.extensions_used:
            flags.append(f"{r.extensions_used} extension{'s' if r.extensions_used != 1 else ''}")
        flags = [html.escape(str(f)) for f in flags]
        if r.capped:
            flags.append("capped")
        cards.append(
            f'<details class="sample {verdict}" data-run="{html.escape(run)}" data-setting="{html.escape(setting)}" '
            f'data-verdict="{verdict}"{" open" if number == 0 else ""}><summary><span class="verdict">'
            f"{'✓' if r.correct else '✗'}</span> "
            f"<b>{html.escape(r.id)}</b> · {html.escape(setting)}"
            f"{' · sample ' + _text(r.sample) if r.sample else ''} · {_text(r.thinking_tokens)} thinking tokens"
            f"{' · ' + ', '.join(flags) if flags else ''} · answer <code>{_text(_shown(r.extracted))}</code>"
            f" (reference <code>{_text(r.gold)}</code>)</summary>"
            f'<div class="prompt"><span class="label">prompt</span>{_text(r.prompt)}</div>'
            f'<div class="output"><span class="label">output</span>{_highlight(r.output, r.forced)}</div>'
            f'<div class="reason">grader: {_text(r.reason or "")}</div></details>'
        )
    return "".join(cards)


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 6px}h3 small{color:#6b7280;font-weight:normal}
.sub{color:#6b7280;margin:0 0 18px}.scroll{overflow-x:auto}
.plot{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px;text-align:center}
.plot svg{max-width:100%;height:auto}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;font-size:14px;margin:6px 0 10px}
th,td{padding:5px 10px;border-bottom:1px solid #eceff3;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
.ci{display:inline-block;position:relative;width:140px;height:10px;background:#eef1f5;border-radius:5px}
.ci .range{position:absolute;top:0;height:10px;background:#9cc3f5;border-radius:5px}
.ci .point{position:absolute;top:-2px;width:3px;height:14px;margin-left:-1px;background:#1f5fbf}
.filters{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin:8px 0 12px}
select,input{font:inherit;padding:3px 6px;border:1px solid #c8ced8;border-radius:5px;background:#fff}
.legend mark{margin-right:8px}
details.sample{background:#fff;border:1px solid #dde1e7;border-left:4px solid #c0392b;border-radius:6px;margin:6px 0;
 padding:6px 10px}
details.sample.correct{border-left-color:#2e8b57}
summary{cursor:pointer}.verdict{font-weight:bold}.correct .verdict{color:#2e8b57}.wrong .verdict{color:#c0392b}
.prompt,.output{white-space:pre-wrap;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f9fafb;
 border:1px solid #eceff3;border-radius:5px;padding:8px;margin:8px 0;overflow-x:auto}
.prompt{color:#6b7280}
.label{display:block;font:11px system-ui,sans-serif;text-transform:uppercase;color:#9aa1ac;margin-bottom:2px}
mark{border-radius:3px;padding:0 2px}mark.extension{background:#ffe08a}mark.forced_end{background:#f7b2b2}
mark.delimiter{background:#d9e2ef}.reason{color:#4b5563;font-size:13px}.count{color:#6b7280}
"""

SCRIPT = """
const pick=()=>{const s=document.getElementById('setting').value,v=document.getElementById('verdict').value,
q=document.getElementById('search').value.toLowerCase();let n=0;
document.querySelectorAll('details.sample').forEach(d=>{const ok=(!s||(d.dataset.run+' '+d.dataset.setting)===s)&&
(!v||d.dataset.verdict===v)&&(!q||d.textContent.toLowerCase().includes(q));d.style.display=ok?'':'none';if(ok)n++;});
document.getElementById('count').textContent=n+' shown';};
document.querySelectorAll('.filters select,.filters input').forEach(e=>e.addEventListener('input',pick));pick();
"""


def render(runs: list[str], title: str | None = None, intro: str = "") -> str:
    """The whole page for one or more run directories written by `s1 eval`."""
    if not runs:
        raise UserError("Name at least one run directory.")
    summaries = [load_summary(r) for r in runs]
    try:
        return _page(runs, summaries, title, intro)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"A summary.json lacks what the page needs ({exc.__class__.__name__}: {exc}); re-run s1 eval "
            "on the run directories to rewrite their summaries."
        ) from None


def _needs(summary: Summary) -> None:
    """The page draws every row's interval and counts: a summary without them (an old or edited file) is
    one sentence, not a broken page."""
    for bench in summary.benchmarks.values():
        for row in bench.settings:
            missing = [name for name in ("samples", "ci_low", "ci_high") if getattr(row, name) is None]
            if bench.problems is None:
                missing.append("problems")
            if missing:
                raise KeyError(missing[0])


def _page(runs: list[str], summaries: list[Summary], title: str | None, intro: str) -> str:
    for summary in summaries:
        _needs(summary)
    names = [Path(r).resolve().name for r in runs]
    curves = []
    for name, summary in zip(names, summaries):
        for bench, data in summary.benchmarks.items():
            for method in data.methods:
                label = " · ".join(
                    ([name] if len(runs) > 1 else []) + ([bench] if len(summary.benchmarks) > 1 else []) + [method]
                )
                curves.append((label, method_points(data.settings, method)))
    title = title or ("s1 report: " + ", ".join(names))
    tables = "".join(
        (f"<h3>{html.escape(name)}</h3>" if len(runs) > 1 else "")
        + "".join(_settings_table(bench, data) for bench, data in summary.benchmarks.items())
        for name, summary in zip(names, summaries)
    )
    found = [_run_samples(run, summary) for run, summary in zip(runs, summaries)]
    samples = [(name, shown) for name, (shown, _) in zip(names, found)]
    counted = sum(total for _, total in found)
    showing = sum(len(shown) for _, shown in samples)
    limited = (
        f" The page shows {showing} of the {counted} samples, the first problems of each setting."
        if showing < counted
        else ""
    )
    options = sorted({f"{name} {r.method} {r.setting}" for name, rs in samples for r in rs})
    cards = "".join(_sample_cards(name, rs) for name, rs in samples)
    models = ", ".join(sorted({str(s.model) for s in summaries}))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summaries[0].notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main>
<h1>{html.escape(title)}</h1>
<p class="sub">model {html.escape(models)} · {len(runs)} run{"s" if len(runs) > 1 else ""}</p>
{intro}
<h2>Accuracy against thinking</h2><div class="plot">{_svg_plot(curves, "")}</div>
<h2>Settings</h2>{tables}
<h2>Control, Scaling, Performance</h2>{_metrics_table(list(zip(names, summaries)), [read_paper(r) for r in runs])}
<details><summary>How to read these tables</summary><ul>{notes}</ul></details>
<h2>Samples</h2>
<div class="filters"><select id="setting"><option value="">every setting</option>
{"".join(f'<option value="{html.escape(o)}">{html.escape(o)}</option>' for o in options)}</select>
<select id="verdict"><option value="">correct and wrong</option><option value="correct">correct</option>
<option value="wrong">wrong</option></select>
<input id="search" placeholder="search text"><span id="count" class="count"></span></div>
<p class="legend">Highlighted: <mark class="extension">extension (forced)</mark>
<mark class="forced_end">forced end and answer prefix</mark>
<mark class="delimiter">end delimiter completed</mark>.{limited}</p>
{cards}
</main><script>{SCRIPT}</script></body></html>
"""


def write_html(runs: list[str], path: str | Path, title: str | None = None, intro: str = "") -> Path:
    return write_atomic(Path(path), render(runs, title, intro))
