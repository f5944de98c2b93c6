"""A summary as Markdown tables (the terminal's and summary.md)."""

from __future__ import annotations

import math

from s1.evaluate.records import Summary, SummaryRow


def _fmt(value, spec: str = ".1f", missing: str = "–") -> str:
    """A number for a table: `missing` where it does not apply (None), n/a where it is undefined (NaN: no sample
    counted)."""
    if value is None:
        return missing
    return "n/a" if isinstance(value, float) and math.isnan(value) else format(value, spec)


cell = _fmt
"""The one way report/ writes a number into a table (compare, html)."""


def _n(row: SummaryRow, problems: int | None) -> str:
    """Samples, and the problems done where the row is partial."""
    return f"{_fmt(row.samples, 'd')}" + ("" if row.complete else f" ({row.problems} of {problems} problems)")


def _yes(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


def cut_of(row: SummaryRow) -> str:
    """A row's cut answers, of what: its samples, or (search rows) the trajectories its point answers from."""
    if row.trajectories is None:
        return f"{row.cut_answers} of {row.samples} samples"
    return f"{row.cut_answers} trajectories"


def summary_markdown(summary: Summary, title: str | None = None, notes: bool = True) -> str:
    lines = [f"# {title or f's1 eval: {summary.model}'}", ""]
    for name, bench in summary.benchmarks.items():
        lines += [
            f"## {name}",
            "",
            "| method | setting | n | mean thinking tokens | accuracy % (95% CI) | in control | strict |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in bench.settings:
            lines.append(
                f"| {r.method} | {r.setting} | {_n(r, bench.problems)} | {_fmt(r.mean_thinking_tokens, '.0f')} | "
                f"{_fmt(r.accuracy)} ({_fmt(r.ci_low)}–{_fmt(r.ci_high)}) | {_yes(r.in_control)} | "
                f"{_yes(r.strict_in_control)} |"
            )
        redrawn = [r for r in bench.settings if r.mean_tries is not None]
        if redrawn:
            lines += ["", "| method | setting | tries / sample | unfit (left out of accuracy) |", "|---|---|---|---|"]
            lines += [f"| {r.method} | {r.setting} | {r.mean_tries:.1f} | {r.unfit} |" for r in redrawn]
        cut = [r for r in bench.settings if r.cut_answers]
        if cut:
            lines += ["", "| method | setting | answers cut by a token limit |", "|---|---|---|"]
            lines += [f"| {r.method} | {r.setting} | {cut_of(r)} |" for r in cut]
        voting = [r for r in bench.settings if r.maj_at_k is not None]
        if voting:
            ks = list(voting[0].maj_at_k)
            lines += [
                "",
                "| method | setting | "
                + " | ".join(f"maj@{k}" for k in ks)
                + " | "
                + " | ".join(f"pass@{k}" for k in ks)
                + " |",
                "|---|---|" + "---|" * (2 * len(ks)),
            ]
            for r in voting:
                lines.append(
                    f"| {r.method} | {r.setting} | "
                    + " | ".join(_fmt(r.maj_at_k.get(k)) for k in ks)
                    + " | "
                    + " | ".join(_fmt((r.pass_at_k or {}).get(k)) for k in ks)
                    + " |"
                )
        searched = [r for r in bench.settings if r.mean_prefill_tokens is not None]
        if searched:
            lines += [
                "",
                "| method | setting | generated tokens / problem | prompt tokens processed / problem | "
                "reward-model tokens / problem | total |",
                "|---|---|---|---|---|---|",
            ]
            for r in searched:
                lines.append(
                    f"| {r.method} | {r.setting} | {r.mean_thinking_tokens:.0f} | {r.mean_prefill_tokens:.0f} | "
                    f"{_fmt(r.mean_reward_tokens, '.0f')} | {_fmt(r.mean_total_tokens, '.0f')} |"
                )
        computed = [r for r in bench.settings if r.compute is not None]
        if computed:
            lines += [
                "",
                "| method | setting | generated tokens / problem: with sharing | without | "
                "prompt tokens / problem: with sharing | without |",
                "|---|---|---|---|---|---|",
            ]
            rows = [(r.method, r.setting, r.compute) for r in computed]
            if bench.compute is not None:
                rows.append(("run", "all settings", bench.compute))
            for method, setting, c in rows:
                lines.append(
                    f"| {method} | {setting} | {c.generated:.0f} | {c.generated_alone:.0f} | {c.prompt:.0f} | "
                    f"{c.prompt_alone:.0f} |"
                )
        lines += [
            "",
            "| method | Control % | strict control % | Scaling (points / 1k thinking tokens) | "
            "Scaling (points / doubling) | Performance % |",
            "|---|---|---|---|---|---|",
        ]
        for method, m in bench.methods.items():
            lines.append(
                f"| {method} | {_fmt(m.control)} | {_fmt(m.strict_control)} | {_fmt(m.scaling_per_1k_tokens, '.2f')} | "
                f"{_fmt(m.scaling_per_doubling, '.2f')} | {_fmt(m.performance)} |"
            )
        lines.append("")
    if not notes:
        return "\n".join(lines) + "\n"
    lines += ["How to read this table:", ""] + [f"- {note}" for note in summary.notes]
    if summary.unused_samples:
        lines.append(
            f"- {summary.unused_samples} samples in samples.jsonl belong to other configurations or problems "
            "and are not counted here."
        )
    if summary.unreadable_lines:
        lines.append(f"- {summary.unreadable_lines} unreadable lines in samples.jsonl were skipped.")
    return "\n".join(lines) + "\n"
