"""The paper's metrics (s1 §3.2): accuracy with a bootstrap interval, Control, Scaling, Performance.

A method is a set A of settings; each setting a has f(a) = accuracy and a position = the mean
thinking tokens it produced. Control (Eq. 1) is the share of settings whose mean thinking tokens lie
within the setting's requested bounds (the summary also reports a stricter per-sample share under its
own name); Scaling is the mean slope over all pairs of settings; Performance is the
best accuracy. The paper's Table 3 numbers (budget forcing Scaling 15) fit accuracy points per
*doubling* of thinking tokens, not per raw token, so both units are reported, labelled.
"""

from __future__ import annotations

import math
import random
from itertools import combinations


def accuracy(correct: list[bool]) -> float:
    return 100.0 * sum(correct) / len(correct) if correct else float("nan")


def bootstrap_ci(
    correct: list[bool] | list[list[bool]], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy (in %), seeded so reports are reproducible.

    Given one list per problem (several samples each), problems are resampled, not samples: samples
    of one problem are correlated, and resampling them alone gives intervals that are too narrow.
    """
    groups = [g if isinstance(g, (list, tuple)) else [g] for g in correct]
    n = len(groups)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    sums = [(sum(1.0 for c in g if c), len(g)) for g in groups]
    means = []
    for _ in range(resamples):
        picked = rng.choices(sums, k=n)
        means.append(100.0 * sum(c for c, _ in picked) / sum(k for _, k in picked))
    means.sort()
    lo = means[int(math.floor((1 - level) / 2 * (resamples - 1)))]
    hi = means[int(math.ceil((1 + level) / 2 * (resamples - 1)))]
    return (lo, hi)


def control(in_control: list[bool | None]) -> float | None:
    """% of settings in control; settings with no requested bounds (None) do not count."""
    judged = [c for c in in_control if c is not None]
    return 100.0 * sum(judged) / len(judged) if judged else None


def scaling(points: list[tuple[float, float]], per: str = "1k") -> float | None:
    """Mean slope of accuracy (points) over all pairs a < b of (thinking tokens, accuracy).

    per="1k": accuracy points per 1,000 thinking tokens, (f(b) - f(a)) / (b - a) * 1000.
    per="doubling": accuracy points per doubling, (f(b) - f(a)) / log2(b / a).
    """
    pairs = [(a, b) for a, b in combinations(sorted(points), 2) if b[0] > a[0] > 0]
    if not pairs:
        return None
    if per == "1k":
        slopes = [(fb - fa) / (xb - xa) * 1000 for (xa, fa), (xb, fb) in pairs]
    elif per == "doubling":
        slopes = [(fb - fa) / math.log2(xb / xa) for (xa, fa), (xb, fb) in pairs]
    else:
        raise ValueError(f"per must be '1k' or 'doubling', got {per!r}")
    return sum(slopes) / len(slopes)


def performance(accuracies: list[float]) -> float | None:
    """The best accuracy of a method's settings; a setting with none (NaN: no sample counted, as when no
    rejection-sampled draw ever fit) is left out rather than let `max` answer by the order of the list."""
    return max((a for a in accuracies if a == a), default=None)


def weighted_vote(classes: list[int | None], weights: list[float | None]) -> int | None:
    """Index of the first sample of the answer class with the largest summed weight (a reward model's
    scores: weighted majority); ties go to the class seen first, and samples without an answer never win."""
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    for i, (c, w) in enumerate(zip(classes, weights)):
        if c is not None:
            totals[c] = totals.get(c, 0.0) + (w if w is not None and w == w else 0.0)
            first.setdefault(c, i)
    if not totals:
        return None
    best = max(totals, key=lambda c: (totals[c], -first[c]))
    return first[best]


def best_of(weights: list[float | None]) -> int | None:
    """Best-of-N: the index of the highest-scored sample (ties: the first); None when nothing is scored."""
    scored = [(w, -i) for i, w in enumerate(weights) if w is not None and w == w]
    return -max(scored)[1] if scored else None


def majority_vote(classes: list[int | None]) -> int | None:
    """Index of the first sample of the largest answer class (ties: the class seen first).

    `classes[i]` names sample i's equivalence class (grading.Grader.classes groups answers by
    math-verify equivalence, so `1/2` and `\\frac12` vote together and `1,2` and `12` apart);
    None is a sample with no answer, which never wins."""
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, c in enumerate(classes):
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
            first.setdefault(c, i)
    if not counts:
        return None
    best = max(counts, key=lambda c: (counts[c], -first[c]))
    return first[best]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
