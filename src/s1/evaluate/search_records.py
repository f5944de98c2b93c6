"""A sweep's parallel and tree-search records: grade every trajectory, choose the answer, summarize.

One record per (setting, problem) holds all its trajectories (and REBASE's tree). Grading runs on the
sweep's grading thread: each trajectory's answer is graded, answers are grouped by equivalence, and the
method picks one — majority (the largest class), best-of-N (the highest reward), weighted majority (the
class with the largest summed reward), REBASE (weighted or plain majority over its finished trajectories).
A parallel record of N trajectories also answers for n = 1, 2, 4 ... < N from its first n, so one run
draws the whole curve.
"""

from __future__ import annotations

from s1.data.grading import GRADER_VERSION, Grader
from s1.evaluate.methods import PARALLEL, Setting
from s1.evaluate.metrics import accuracy, best_of, bootstrap_ci, majority_vote, weighted_vote


def sizes(n: int) -> list[int]:
    """1, 2, 4 ... below n, then n."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n]


def pick(method: str, vote: str, classes: list[int | None], rewards: list[float | None]) -> int | None:
    if method == "best_of_n":
        return best_of(rewards)
    if method == "weighted_majority" or (method == "rebase" and vote == "weighted"):
        return weighted_vote(classes, rewards)
    return majority_vote(classes)


def choose_answer(record: dict, grader: Grader) -> None:
    """Grade a search record's trajectories and fill in its chosen answer, per n for parallel methods."""
    trajectories, kind, gold = record["trajectories"], record["kind"], record["gold"]
    for t, grade in zip(trajectories, grader.grade_many([(kind, gold, t["answer"]) for t in trajectories])):
        t.update(extracted=grade.extracted, correct=grade.correct)
    classes = grader.classes(kind, [t["extracted"] for t in trajectories]) if trajectories else []
    rewards = [t["reward"] for t in trajectories]
    method, vote = record["method"], record["setting_spec"]["search"]["vote"]
    parallel = method in PARALLEL
    points = {}
    for n in sizes(len(trajectories)) if parallel else [len(trajectories)]:
        first = trajectories[:n]
        choice = pick(method, vote, classes[:n], rewards[:n])
        points[str(n)] = {
            "choice": choice,
            "correct": choice is not None and bool(trajectories[choice]["correct"]),
            "generated_tokens": sum(t["generated_tokens"] for t in first) if parallel else record["generated_tokens"],
            "prefill_tokens": record["root_prefill"] + sum(t["prefill_tokens"] for t in first)
            if parallel
            else record["prefill_tokens"],
            # majority reads no reward, even when it shares its trajectories with a method that does
            "reward_tokens": 0
            if method == "majority"
            else sum(t["reward_tokens"] for t in first)
            if parallel
            else record["reward_tokens"],
        }
    final = points[str(len(trajectories))] if trajectories else {"choice": None, "correct": False}
    chosen = trajectories[final["choice"]] if final["choice"] is not None else None
    record.update(
        points=points,
        correct=final["correct"],
        extracted=chosen["extracted"] if chosen else None,
        answer=chosen["answer"] if chosen else "",
        reason="chosen by " + method,
        grader=GRADER_VERSION,
    )


def search_rows(setting: Setting, records: list[dict], problems: int) -> list[dict]:
    """Summary rows of one search setting: one per n (parallel) or one (REBASE), over the problems done."""
    if not records:
        return []
    rows = []
    for n in sorted({int(k) for k in records[0]["points"]}):
        points = [r["points"][str(n)] for r in records if str(n) in r.get("points", {})]
        if len(points) < len(records):
            continue
        groups = [[bool(p["correct"])] for p in points]
        lo, hi = bootstrap_ci(groups)
        mean = lambda key: sum(p[key] for p in points) / len(points)  # noqa: E731
        label = setting.label
        if setting.method in PARALLEL:
            label = label.replace(f"n={setting.search.trajectories}", f"n={n}", 1)
        rows.append(
            {
                "method": setting.method,
                "setting": label,
                "problems": len(points),
                "samples": len(points),
                "complete": len(points) == problems,
                "reference": False,
                "accuracy": accuracy([g[0] for g in groups]),
                "ci_low": lo,
                "ci_high": hi,
                "mean_thinking_tokens": mean("generated_tokens"),
                "mean_prefill_tokens": mean("prefill_tokens"),
                "mean_reward_tokens": mean("reward_tokens"),
                "mean_total_tokens": mean("generated_tokens") + mean("prefill_tokens") + mean("reward_tokens"),
                "in_control": None,
                "relative": None,
                "trajectories": n,
                "draw": setting.search.trajectories,
            }
        )
    return rows
