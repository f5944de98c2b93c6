"""Stage 7, select: the paper's Algorithm 1, the procedure s1's released notebook ran, and Table 2's ablations.

Algorithm 1 (`s1`): start from the pre-selected questions; until N are chosen, pick a domain uniformly
among those with questions left, rank its questions by trace length (longest is rank 0), draw one with
weight 2^-rank, remove it, and drop the domain once it is empty.

The notebook (`notebook`): what s1K was actually drawn with. The same draw within a domain, but the
domain is uniform only while fewer than `uniform_picks` (700) questions are chosen, pre-selected ones
counted; after that it is drawn in proportion to the domains of the benchmark sources in the pool
(`benchmark_mix`: AIME's domain counts as they are, GPQA's scaled so GPQA weighs half as much as AIME).
As in the notebook, the pre-selected questions stay in their domains, so a draw may land on one and add
nothing; a domain that empties leaves both distributions. Where no benchmark domain has questions left
(the notebook would stop on a division by zero) the domain is uniform again.

Table 2's ablations draw from the pool the paper drew them from, not from what survived the difficulty
filter (`POOLS`): `random` N, `longest` N, `diverse` N (uniform domain, uniform within it) from every
question that passed decontamination, traces and quality; `full` takes the whole pool (the paper's 59K:
every question with a trace, before the quality filter), whatever N is. Pre-selection belongs to s1K's
procedures (`s1`, `notebook`); the ablations ignore it. Every strategy is seeded, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s1.core.errors import UserError

STAGE = "select"

POOLS = {
    "s1": "select",
    "notebook": "select",
    "random": "difficulty",
    "longest": "difficulty",
    "diverse": "difficulty",
    "full": "quality",
}
"""Strategy -> the first stage whose drops it ignores: its pool is every question no earlier stage dropped
(`Store.rows(stage)`). s1K's procedures draw after every filter; the 1K ablations before the difficulty
filter; the full pool before the quality filter too."""
STRATEGIES = tuple(POOLS)


@dataclass(frozen=True)
class Candidate:
    id: str
    domain: str
    length: int
    source: str = ""


TRAINABLE = (
    "(thinking IS NOT NULL AND TRIM(thinking) != '' AND attempt IS NOT NULL AND TRIM(attempt) != '') AS trainable"
)


def pool(store, strategy: str, columns: str) -> list:
    """The rows a strategy draws from, in pool order: those no stage before its `POOLS` stage dropped, and only
    rows with a trace and an attempt (the quality filter drops the others; the full pool comes before it)."""
    rows = store.rows(POOLS[strategy], f"{columns}, {TRAINABLE}")
    return [r for r in rows if r["trainable"]]


def classified(store, strategy: str, columns: str) -> list:
    """The rows the diversity stage puts in domains: the pool of a strategy that draws after the difficulty filter,
    else every question that passed quality (the ablations' pool; the full pool needs no domains to draw)."""
    return store.rows("diversity" if POOLS[strategy] == "select" else "difficulty", columns)


def _by_domain(candidates: list[Candidate], longest_first: bool) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.domain, []).append(c)
    for members in groups.values():
        members.sort(key=lambda c: (-c.length, c.id) if longest_first else c.id)
    return dict(sorted(groups.items()))


def _draw_within(members: list[Candidate], rng: np.random.Generator, weighted: bool) -> int:
    if weighted:
        weights = np.exp2(-np.arange(len(members), dtype=np.float64))
        return int(rng.choice(len(members), p=weights / weights.sum()))
    return int(rng.integers(len(members)))


def _domain_draws(groups: dict[str, list[Candidate]], n: int, rng: np.random.Generator, weighted: bool) -> list[str]:
    chosen = []
    while len(chosen) < n and groups:
        domain = list(groups)[rng.integers(len(groups))]
        members = groups[domain]
        chosen.append(members.pop(_draw_within(members, rng, weighted)).id)
        if not members:
            del groups[domain]
    return chosen


def benchmark_weights(candidates: list[Candidate], mix: dict[str, float]) -> dict[str, int]:
    """Domain -> weight from the benchmark sources' questions, as the notebook computed it: the first source's
    domain counts as they are, each other source's scaled by weight x (first source's count / its own count)
    and truncated to whole numbers."""
    counts: dict[str, dict[str, int]] = {source: {} for source in mix}
    for c in candidates:
        if c.source in counts:
            counts[c.source][c.domain] = counts[c.source].get(c.domain, 0) + 1
    anchor = sum(counts[next(iter(mix))].values()) if mix else 0
    weights: dict[str, int] = {}
    for source, share in mix.items():
        total = sum(counts[source].values())
        if not total:
            continue
        ratio = share * anchor / total
        for domain, count in counts[source].items():
            weights[domain] = weights.get(domain, 0) + int(count * ratio)
    return {d: w for d, w in sorted(weights.items()) if w > 0}


def _notebook(
    candidates: list[Candidate],
    n: int,
    pre: list[str],
    rng: np.random.Generator,
    uniform_picks: int,
    mix: dict[str, float],
) -> list[str]:
    groups = _by_domain(candidates, longest_first=True)
    mixed = {d: w for d, w in benchmark_weights(candidates, mix).items() if d in groups}
    chosen = list(pre)
    taken = set(pre)
    while len(chosen) < n and groups:
        if len(chosen) < uniform_picks or not mixed:
            domain = list(groups)[rng.integers(len(groups))]
        else:
            names = list(mixed)
            p = np.array([mixed[d] for d in names], dtype=np.float64)
            domain = names[int(rng.choice(len(names), p=p / p.sum()))]
        members = groups[domain]
        pick = members.pop(_draw_within(members, rng, weighted=True)).id
        if pick not in taken:
            taken.add(pick)
            chosen.append(pick)
        if not members:
            del groups[domain]
            mixed.pop(domain, None)
    return chosen


def select(
    candidates: list[Candidate],
    n: int,
    strategy: str = "s1",
    seed: int = 0,
    preselected: list[str] = (),
    uniform_picks: int = 700,
    benchmark_mix: dict[str, float] | None = None,
) -> list[str]:
    """Ids of the chosen questions, in the order they were chosen (pre-selected first)."""
    pre = list(dict.fromkeys(preselected))
    if len(pre) > n and strategy != "full":
        raise UserError(
            f"Pre-selection keeps {len(pre)} questions, more than n = {n}; raise selection.n or narrow "
            "selection.preselect."
        )
    rng = np.random.default_rng(seed)
    if strategy == "notebook":
        mix = {"AIME": 1.0, "GPQA": 0.5} if benchmark_mix is None else benchmark_mix
        return _notebook(candidates, n, pre, rng, uniform_picks, mix)
    taken = set(pre)
    rest = [c for c in candidates if c.id not in taken]
    want = n - len(pre)
    if strategy == "s1":
        return pre + _domain_draws(_by_domain(rest, longest_first=True), want, rng, weighted=True)
    if strategy == "diverse":
        return pre + _domain_draws(_by_domain(rest, longest_first=False), want, rng, weighted=False)
    if strategy == "longest":
        return pre + [c.id for c in sorted(rest, key=lambda c: (-c.length, c.id))[:want]]
    if strategy == "random":
        order = sorted(rest, key=lambda c: c.id)
        picks = rng.permutation(len(order))[:want]
        return pre + [order[i].id for i in picks]
    if strategy == "full":
        return pre + [c.id for c in rest]
    raise UserError(f"Unknown selection strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")


def preselected(rows, preselect) -> list[str]:
    """The paper's rule: teacher-correct questions of `sources`, and of `long_sources` with long traces."""
    if preselect is None:
        return []
    keep = []
    for row in rows:
        if row["teacher_correct"] != 1:
            continue
        if row["source"] in preselect.sources or (
            row["source"] in preselect.long_sources and (row["trace_tokens"] or 0) > preselect.min_trace_tokens
        ):
            keep.append(row["id"])
    return keep


def run(ctx) -> dict:
    config, store = ctx.config, ctx.store
    settings = config.selection
    rows = pool(store, settings.strategy, "id, source, domain, trace_tokens, teacher_correct")
    candidates = [Candidate(r["id"], r["domain"] or "unknown", r["trace_tokens"] or 0, r["source"]) for r in rows]
    pre = preselected(rows, settings.preselect) if settings.strategy in ("s1", "notebook") else []
    chosen = select(
        candidates,
        settings.n,
        settings.strategy,
        settings.seed,
        pre,
        uniform_picks=settings.uniform_picks,
        benchmark_mix=settings.benchmark_mix,
    )
    store.set_selected(chosen)
    picked = set(chosen)
    domains = {c.domain for c in candidates if c.id in picked}
    wanted = len(candidates) if settings.strategy == "full" else settings.n
    return {
        "candidates": len(candidates),
        "drawn_before": POOLS[settings.strategy],
        "preselected": len(pre),
        "selected": len(chosen),
        "domains": len(domains),
        "short_of_n": max(0, wanted - len(chosen)),
        "strategy": settings.strategy,
        "seed": settings.seed,
    }
