"""Stage 7, select: the paper's Algorithm 1 (and its ablations) over the questions left.

Algorithm 1: start from the pre-selected questions; until N are chosen, pick a domain uniformly among
those with questions left, rank its questions by trace length (longest is rank 0), draw one with
weight 2^-rank, remove it, and drop the domain once it is empty. Seeded, so a run is reproducible.
Ablations (`strategy`): random N, longest N, diverse N (uniform domain, then uniform within it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s1.core.errors import UserError

STAGE = "select"


@dataclass(frozen=True)
class Candidate:
    id: str
    domain: str
    length: int


def _by_domain(candidates: list[Candidate], longest_first: bool) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.domain, []).append(c)
    for members in groups.values():
        members.sort(key=lambda c: (-c.length, c.id) if longest_first else c.id)
    return dict(sorted(groups.items()))


def _domain_draws(groups: dict[str, list[Candidate]], n: int, rng: np.random.Generator, weighted: bool) -> list[str]:
    chosen = []
    while len(chosen) < n and groups:
        domain = list(groups)[rng.integers(len(groups))]
        members = groups[domain]
        if weighted:
            weights = np.exp2(-np.arange(len(members), dtype=np.float64))
            index = int(rng.choice(len(members), p=weights / weights.sum()))
        else:
            index = int(rng.integers(len(members)))
        chosen.append(members.pop(index).id)
        if not members:
            del groups[domain]
    return chosen


def select(
    candidates: list[Candidate], n: int, strategy: str = "s1", seed: int = 0, preselected: list[str] = ()
) -> list[str]:
    """Ids of the chosen questions, in the order they were chosen (pre-selected first)."""
    pre = list(dict.fromkeys(preselected))
    if len(pre) > n:
        raise UserError(
            f"Pre-selection keeps {len(pre)} questions, more than n = {n}; raise selection.n or narrow "
            "selection.preselect."
        )
    taken = set(pre)
    rest = [c for c in candidates if c.id not in taken]
    want = n - len(pre)
    rng = np.random.default_rng(seed)
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
    raise UserError(f"Unknown selection strategy {strategy!r}; choose s1, random, longest or diverse.")


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
    rows = store.alive("id, source, domain, trace_tokens, teacher_correct")
    candidates = [Candidate(r["id"], r["domain"] or "unknown", r["trace_tokens"] or 0) for r in rows]
    pre = preselected(rows, settings.preselect)
    chosen = select(candidates, settings.n, settings.strategy, settings.seed, pre)
    store.set_selected(chosen)
    picked = set(chosen)
    domains = {c.domain for c in candidates if c.id in picked}
    return {
        "candidates": len(candidates),
        "preselected": len(pre),
        "selected": len(chosen),
        "domains": len(domains),
        "short_of_n": max(0, settings.n - len(chosen)),
        "strategy": settings.strategy,
        "seed": settings.seed,
    }
