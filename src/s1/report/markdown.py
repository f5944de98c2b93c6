"""A summary as Markdown tables (the terminal's and summary.md)."""

from __future__ import annotations


def _fmt(value, spec: str = ".1f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def summary_markdown(summary: dict, title: str | None = None, notes: bool = True) -> str:
    lines = [f"# {title or 's1 eval: ' + summary['model']}", ""]
    for name, bench in summary["benchmarks"].items():
        lines += [
            f"## {name}",
            "",
            "| method | setting | n | mean thinking tokens | accuracy % (95% CI) | in control |",
            "|---|---|---|---|---|---|",
        ]
        for r in bench["settings"]:
            control_text = "–" if r["in_control"] is None else ("yes" if r["in_control"] else "no")
            n = f"{r['samples']}" + (
                "" if r.get("complete", True) else f" ({r['problems']} of {bench['problems']} problems)"
            )
            lines.append(
                f"| {r['method']} | {r['setting']} | {n} | {r['mean_thinking_tokens']:.0f} | "
                f"{r['accuracy']:.1f} ({r['ci_low']:.1f}–{r['ci_high']:.1f}) | {control_text} |"
            )
        if any("maj@k" in r for r in bench["settings"]):
            ks = list(next(r for r in bench["settings"] if "maj@k" in r)["maj@k"])
            lines += [
                "",
                "| method | setting | "
                + " | ".join(f"maj@{k}" for k in ks)
                + " | "
                + " | ".join(f"pass@{k}" for k in ks)
                + " |",
                "|---|---|" + "---|" * (2 * len(ks)),
            ]
            for r in bench["settings"]:
                if "maj@k" in r:
                    lines.append(
                        f"| {r['method']} | {r['setting']} | "
                        + " | ".join(f"{r['maj@k'][k]:.1f}" for k in ks)
                        + " | "
                        + " | ".join(f"{r['pass@k'][k]:.1f}" for k in ks)
                        + " |"
                    )
        searched = [r for r in bench["settings"] if "mean_prefill_tokens" in r]
        if searched:
            lines += [
                "",
                "| method | setting | generated tokens / problem | prompt tokens processed / problem | "
                "reward-model tokens / problem | total |",
                "|---|---|---|---|---|---|",
            ]
            for r in searched:
                lines.append(
                    f"| {r['method']} | {r['setting']} | {r['mean_thinking_tokens']:.0f} | {r['mean_prefill_tokens']:.0f} | "
                    f"{r['mean_reward_tokens']:.0f} | {r['mean_total_tokens']:.0f} |"
                )
        lines += [
            "",
            "| method | Control % | Scaling (points / 1k thinking tokens) | Scaling (points / doubling) | Performance % |",
            "|---|---|---|---|---|",
        ]
        for method, m in bench["methods"].items():
            lines.append(
                f"| {method} | {_fmt(m['control'])} | {_fmt(m['scaling_per_1k_tokens'], '.2f')} | "
                f"{_fmt(m['scaling_per_doubling'], '.2f')} | {_fmt(m['performance'])} |"
            )
        lines.append("")
    if not notes:
        return "\n".join(lines) + "\n"
    lines += ["How to read this table:", ""] + [f"- {note}" for note in summary.get("notes", [])]
    if summary.get("unused_samples"):
        lines.append(
            f"- {summary['unused_samples']} samples in samples.jsonl belong to other configurations or problems "
            "and are not counted here."
        )
    if summary.get("unreadable_lines"):
        lines.append(f"- {summary['unreadable_lines']} unreadable lines in samples.jsonl were skipped.")
    return "\n".join(lines) + "\n"
