"""Stage 8, export: the chosen questions in s1K's format, and the report of the whole run.

`s1k.jsonl` holds one record per chosen question (`question, solution, cot_type, source_type, metadata,
thinking_trajectories, attempt`), ready for `s1 train --data`. `report.json` / `report.md` give the counts
after every stage per source, per domain, the drops by rule, the model calls (sent, from cache, failed,
re-sent after an interruption, repeated although answered) and trace lengths; `trace_lengths.png` draws them.
"""

from __future__ import annotations

import json
import statistics

from s1.core.errors import UserError
from s1.core.files import save_figure, write_atomic
from s1.curate.selection import pool
from s1.curate.store import STAGES

STAGE = "export"
DATA = "s1k.jsonl"


def records(store) -> list[dict]:
    out = []
    for row in store.selected():
        metadata = json.loads(row["metadata"] or "{}")
        metadata.update(
            {"id": row["id"], "answer": row["answer"], "domain": row["domain"], "trace_tokens": row["trace_tokens"]}
        )
        out.append(
            {
                "question": row["question"],
                "solution": row["solution"] or row["answer"] or "",
                "cot_type": row["cot_type"],
                "source_type": row["source"],
                "metadata": json.dumps(metadata, ensure_ascii=False, default=str),
                "thinking_trajectories": [row["thinking"]],
                "attempt": row["attempt"],
            }
        )
    return out


def _lengths(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 1),
        "max": max(values),
    }


def report(store, config, domains: dict | None = None) -> dict:
    rows = store.rows(None, "id, source, dropped_by, drop_rule, domain, trace_tokens, selected")
    sources = list(dict.fromkeys([s.name for s in config.sources] + [r["source"] for r in rows]))
    stages = []
    for number, stage in enumerate(STAGES[:6]):
        earlier = set(STAGES[: number + 1])
        left = [r for r in rows if r["dropped_by"] not in earlier]
        rules: dict[str, int] = {}
        for r in rows:
            if r["dropped_by"] == stage:
                rules[r["drop_rule"]] = rules.get(r["drop_rule"], 0) + 1
        stages.append(
            {
                "stage": stage,
                "remaining": len(left),
                "dropped": sum(rules.values()),
                "rules": rules,
                "per_source": {s: sum(r["source"] == s for r in left) for s in sources},
            }
        )
    drawn = {r["id"] for r in pool(store, config.selection.strategy, "id")}
    alive = [r for r in rows if r["id"] in drawn]  # the pool the strategy drew from
    chosen = [r for r in rows if r["selected"] is not None]
    per_domain: dict[str, dict] = {}
    for r in alive:
        entry = per_domain.setdefault(r["domain"] or "unknown", {"candidates": 0, "selected": 0})
        entry["candidates"] += 1
        entry["selected"] += r["selected"] is not None
    if domains:
        for code, entry in per_domain.items():
            entry["title"] = domains.get(code, {}).get("title", "")
    calls = store.call_stats()
    runs = store.stage_counts()
    from_cache = {}
    for counts in runs.values():
        for role, tally in (counts.get("calls") or {}).items():
            from_cache[role] = from_cache.get(role, 0) + tally.get("from_cache", 0)
    for role, entry in calls.items():
        entry["from_cache_last_run"] = from_cache.get(role, 0)
    totals = {k: sum(c[k] for c in calls.values()) for k in ("sent", "answered", "failed", "repeated", "resent")}
    totals["from_cache_last_run"] = sum(from_cache.values())
    return {
        "output": str(config.output),
        "pool": len(rows),
        "stages": stages,
        "selected": len(chosen),
        "strategy": config.selection.strategy,
        "n": config.selection.n,
        "per_source_selected": {s: sum(r["source"] == s for r in chosen) for s in sources},
        "per_domain": dict(sorted(per_domain.items())),
        "calls": calls,
        "calls_total": totals,
        "trace_tokens": {
            "candidates": _lengths([r["trace_tokens"] for r in alive if r["trace_tokens"] is not None]),
            "selected": _lengths([r["trace_tokens"] for r in chosen if r["trace_tokens"] is not None]),
        },
        "last_runs": runs,
    }


def markdown(rep: dict) -> str:
    sources = list(rep["stages"][0]["per_source"]) if rep["stages"] else []
    lines = [
        f"# Curation report: {rep['output']}",
        "",
        f"Pool: {rep['pool']} questions; selected {rep['selected']} of n = {rep['n']} ({rep['strategy']}).",
        "",
        "## Questions left after each stage",
        "",
        "| stage | left | dropped | " + " | ".join(sources) + " |",
        "|---|---:|---:|" + "---:|" * len(sources),
    ]
    for s in rep["stages"]:
        lines.append(
            f"| {s['stage']} | {s['remaining']} | {s['dropped']} | "
            + " | ".join(str(s["per_source"][x]) for x in sources)
            + " |"
        )
    lines.append(
        f"| selected | {rep['selected']} | | " + " | ".join(str(rep["per_source_selected"][x]) for x in sources) + " |"
    )
    lines += ["", "## Drops by rule", "", "| stage | rule | questions |", "|---|---|---:|"]
    for s in rep["stages"]:
        for rule, count in sorted(s["rules"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {s['stage']} | {rule} | {count} |")
    lines += ["", "## Domains", "", "| domain | title | candidates | selected |", "|---|---|---:|---:|"]
    for code, d in rep["per_domain"].items():
        lines.append(f"| {code} | {d.get('title', '')} | {d['candidates']} | {d['selected']} |")
    t = rep["calls_total"]
    lines += [
        "",
        "## Model calls",
        "",
        f"Sent {t['sent']}, answered {t['answered']}, failed {t['failed']}; answered from the cache in the last "
        f"run: {t['from_cache_last_run']}; re-sent because a run died while they were in flight: {t['resent']}; "
        f"repeated although already answered: {t['repeated']}.",
        "",
        "| role | distinct calls | sent | answered | failed | from cache (last run) | re-sent | repeated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for role, c in rep["calls"].items():
        lines.append(
            f"| {role} | {c['keys']} | {c['sent']} | {c['answered']} | {c['failed']} | "
            f"{c['from_cache_last_run']} | {c['resent']} | {c['repeated']} |"
        )
    lines += [
        "",
        "## Trace length (student tokens)",
        "",
        "| set | count | min | median | mean | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, d in rep["trace_tokens"].items():
        lines.append(
            f"| {name} | {d['count']} | {d.get('min', '')} | {d.get('median', '')} "
            f"| {d.get('mean', '')} | {d.get('max', '')} |"
        )
    lines += [
        "",
        "Histogram: trace_lengths.png. Definitions: a stage's *left* counts the questions no stage up to it "
        "dropped; *re-sent* calls were in flight when an earlier run was killed; *repeated* calls had a stored "
        "reply and were sent anyway (should be 0).",
        "",
    ]
    return "\n".join(lines)


def histogram(store, path, strategy: str = "s1") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alive = [r["trace_tokens"] for r in pool(store, strategy, "trace_tokens") if r["trace_tokens"] is not None]
    chosen = [r["trace_tokens"] for r in store.selected() if r["trace_tokens"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = 30
    if alive:
        ax.hist(alive, bins=bins, alpha=0.5, label=f"candidates ({len(alive)})")
    if chosen:
        ax.hist(chosen, bins=bins, alpha=0.7, label=f"selected ({len(chosen)})")
    ax.set_xlabel("trace length (student tokens)")
    ax.set_ylabel("questions")
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)


def run(ctx) -> dict:
    store, out = ctx.store, ctx.output
    data = records(store)
    write_atomic(out / DATA, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data))
    histogram(store, out / "trace_lengths.png", ctx.config.selection.strategy)
    return {"records": len(data), "file": str(out / DATA)}


def write_report(ctx) -> dict:
    from s1.curate.diversity import load_domains

    try:
        domains = load_domains(ctx.config)
    except UserError:  # titles are decoration; the counts do not need them
        domains = None
    rep = report(ctx.store, ctx.config, domains)
    write_atomic(ctx.output / "report.json", json.dumps(rep, indent=2, ensure_ascii=False) + "\n")
    write_atomic(ctx.output / "report.md", markdown(rep))
    return rep
