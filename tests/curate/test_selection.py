"""Selection: the notebook's procedure drawn statistically, and Table 2's ablations drawn from the paper's pool."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from s1.core.errors import UserError
from s1.curate import load_config, run
from s1.curate.selection import Candidate, benchmark_weights, select
from tests.curate.test_curate_stages import _config, _python_roles, _rows, _walk_pool, _write_jsonl


def _chi2(observed: list[int], expected: list[float]) -> float:
    return float(sum((o - e) ** 2 / e for o, e in zip(observed, expected)))


def _bench_pool() -> list[Candidate]:
    """Five large domains; AIME questions in A (30) and B (10), GPQA ones in C (40)."""
    pool = [Candidate(f"{d}-{i}", d, (i * 37) % 1000) for d in "ABCDE" for i in range(1000)]
    pool += [Candidate(f"aime-A-{i}", "A", i, "AIME") for i in range(30)]
    pool += [Candidate(f"aime-B-{i}", "B", i, "AIME") for i in range(10)]
    pool += [Candidate(f"gpqa-C-{i}", "C", i, "GPQA") for i in range(40)]
    return pool


def test_benchmark_mix_is_the_notebooks_aime_plus_scaled_gpqa():
    """GPQA's domain counts x int(0.5 x #AIME / #GPQA), truncated per domain, added to AIME's."""
    pool = [Candidate(f"a{i}", "A", 0, "AIME") for i in range(30)] + [
        Candidate(f"b{i}", "B", 0, "AIME") for i in range(10)
    ]
    pool += [Candidate(f"c{i}", "C", 0, "GPQA") for i in range(25)] + [
        Candidate(f"g{i}", "A", 0, "GPQA") for i in range(15)
    ]
    pool += [Candidate(f"x{i}", "X", 0, "MATH") for i in range(50)]
    # ratio 0.5 x 40 / 40 = 0.5: C int(12.5) = 12, A 30 + int(7.5) = 37; MATH is no benchmark
    assert benchmark_weights(pool, {"AIME": 1.0, "GPQA": 0.5}) == {"A": 37, "B": 10, "C": 12}
    assert benchmark_weights(pool, {"AIME": 1.0}) == {"A": 30, "B": 10}
    assert benchmark_weights(pool, {"GPQA": 1.0, "AIME": 0.5}) == {"A": 15 + 15, "B": 5, "C": 25}


def test_notebook_draws_domains_uniformly_then_by_the_benchmark_mix():
    """The first `uniform_picks` draws spread evenly over all five domains; after them only A, B and C (the
    benchmarks' domains) are drawn, in proportion 30 : 10 : 20 (GPQA's 40 scaled by 0.5 x 40 / 40)."""
    chosen = select(_bench_pool(), 700, "notebook", seed=11, uniform_picks=200)
    assert len(chosen) == len(set(chosen)) == 700
    domain = lambda i: i.split("-")[-2] if i.count("-") == 2 else i[0]  # noqa: E731
    first = Counter(domain(i) for i in chosen[:200])
    later = Counter(domain(i) for i in chosen[200:])
    assert _chi2([first[d] for d in "ABCDE"], [40.0] * 5) < 18.5, first  # 4 degrees of freedom, p = 0.001
    assert set(later) == set("ABC"), later
    expected = [500 * 30 / 60, 500 * 10 / 60, 500 * 20 / 60]
    assert _chi2([later[d] for d in "ABC"], expected) < 13.8, later  # 2 degrees of freedom, p = 0.001
    # seeded: the same seed draws the same list, another seed another
    assert select(_bench_pool(), 700, "notebook", seed=11, uniform_picks=200) == chosen
    assert select(_bench_pool(), 700, "notebook", seed=12, uniform_picks=200) != chosen


def test_notebook_ranks_by_trace_length_within_a_domain():
    lengths = [5, 90, 40, 70, 10, 60, 20, 80]
    candidates = [Candidate(f"q{i}", "D", n, "AIME") for i, n in enumerate(lengths)]
    rank_of = {c.id: r for r, c in enumerate(sorted(candidates, key=lambda c: -c.length))}
    draws = 3000
    counts = Counter(rank_of[select(candidates, 1, "notebook", seed=s)[0]] for s in range(draws))
    expected = np.exp2(-np.arange(8)) / np.exp2(-np.arange(8)).sum() * draws
    assert _chi2([counts[r] for r in range(8)], list(expected)) < 24.3  # 7 degrees of freedom, p = 0.001


def test_notebook_counts_preselected_toward_the_uniform_picks_and_redraws_them_for_nothing():
    """Pre-selected questions come first and count toward the 700 (here 10); they stay in their domain, so a
    draw may land on one and add nothing, and no question is chosen twice."""
    pool = _bench_pool()
    pre = ["aime-A-29", "aime-A-28", "gpqa-C-39", "aime-B-9"]  # the longest of their sources
    for seed in range(5):
        chosen = select(pool, 60, "notebook", seed=seed, preselected=pre, uniform_picks=10)
        assert chosen[:4] == pre and len(chosen) == len(set(chosen)) == 60
        assert {i[0] for i in chosen[10:]} <= {"A", "B", "C", "a", "g"}  # after 10 chosen: the mix's domains only
    # a tiny pool where the only domain holds pre-selected questions: draws land on them and add nothing
    small = [Candidate("p1", "P", 9), Candidate("p2", "P", 8), Candidate("q", "P", 1)]
    assert select(small, 3, "notebook", seed=0, preselected=["p1", "p2"]) == ["p1", "p2", "q"]


def test_notebook_leaves_an_emptied_domain_and_falls_back_to_uniform_when_no_benchmark_domain_is_left():
    pool = [Candidate(f"b-{i}", "B", i, "AIME") for i in range(5)] + [
        Candidate(f"{d}-{i}", d, i) for d in "XY" for i in range(100)
    ]
    chosen = select(pool, 105, "notebook", seed=3, uniform_picks=0)
    assert sorted(chosen[:5]) == [f"b-{i}" for i in range(5)]  # only B is a benchmark domain, until it empties
    rest = Counter(i[0] for i in chosen[5:])
    assert set(rest) == {"X", "Y"} and _chi2([rest["X"], rest["Y"]], [50.0, 50.0]) < 10.8, rest


@pytest.mark.parametrize("strategy", ["s1", "notebook", "random", "longest", "diverse", "full"])
def test_every_strategy_is_seeded(strategy):
    pool = _bench_pool()[::7]
    assert select(pool, 120, strategy, seed=5) == select(pool, 120, strategy, seed=5)
    if strategy not in ("longest", "full"):
        assert select(pool, 120, strategy, seed=5) != select(pool, 120, strategy, seed=6)
    if strategy == "full":
        assert sorted(select(pool, 3, "full")) == sorted(c.id for c in pool)  # the whole pool, whatever n is


# --------------------------------------------------------------------------- the pool each strategy draws
def _pool_run(tmp_path: Path, strategy: str, n: int) -> dict[str, dict]:
    """The demo's walk questions through every stage with python roles; the solver solves the short walks,
    so the difficulty filter drops some; a question with an image is dropped by the quality filter."""
    walks = [json.loads(line) for line in _walk_pool(tmp_path, 16).open()]
    walks.append({"id": "image", "question": walks[0]["question"] + " See ![Image](walk.png).", "answer": "0"})
    domains = tmp_path / "domains.json"
    domains.write_text(json.dumps({"add": "Addition", "double": "Doubling", "square": "Squaring"}))
    config = load_config(
        _config(
            tmp_path,
            [{"name": "walks", "path": str(_write_jsonl(tmp_path / "pool.jsonl", walks))}],
            eval_sets=[],
            roles=_python_roles("s1.demo.task:teacher"),
            domains=str(domains),
            student=str(tmp_path / "student"),
            selection={"n": n, "strategy": strategy, "seed": 1},
        )
    )
    if not (tmp_path / "student").exists():
        from s1.demo import tiny

        tiny.build(tmp_path / "student")
    run(config, show_progress=False, say=lambda s: None)
    return _rows(tmp_path / "run")


@pytest.mark.slow
def test_ablations_draw_from_the_pool_before_the_difficulty_filter(tmp_path):
    """Table 2's random, diverse and longest draw from every question that passed quality, so they can pick
    questions the difficulty filter dropped; s1's Algorithm 1 never does; full also takes what quality dropped."""
    rows = _pool_run(tmp_path, "random", 100)
    solved = {i for i, r in rows.items() if r["dropped_by"] == "difficulty"}
    kept = {i for i, r in rows.items() if r["dropped_by"] is None}
    assert solved and kept and rows["walks/image"]["dropped_by"] == "quality"
    picked = {i for i, r in rows.items() if r["selected"] is not None}
    assert picked == solved | kept  # n above the pool: all of it, the solved ones included, the image not
    assert all(rows[i]["domain"] for i in solved)  # put in domains, so diverse can draw them too

    for strategy in ("diverse", "longest"):
        rows = _pool_run(tmp_path, strategy, len(solved | kept) - 1)
        picked = {i for i, r in rows.items() if r["selected"] is not None}
        assert picked & solved and picked <= solved | kept, strategy

    rows = _pool_run(tmp_path, "s1", 100)
    assert {i for i, r in rows.items() if r["selected"] is not None} == kept

    rows = _pool_run(tmp_path, "full", 1)
    assert {i for i, r in rows.items() if r["selected"] is not None} == solved | kept | {"walks/image"}
    records = [json.loads(line) for line in (tmp_path / "run" / "s1k.jsonl").open()]
    assert len(records) == len(rows) and all(r["thinking_trajectories"][0] and r["attempt"] for r in records)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["strategy"] == "full" and report["selected"] == len(rows)


def test_random_can_pick_any_question_of_the_pool_a_solver_solved():
    """Over seeds, the random ablation picks each question of its pool, solved or not, about equally often."""
    pool = [Candidate(f"q{i}", "D", i) for i in range(20)]
    counts = Counter(i for seed in range(400) for i in select(pool, 5, "random", seed=seed))
    assert set(counts) == {c.id for c in pool}
    assert _chi2([counts[c.id] for c in pool], [100.0] * 20) < 43.8  # 19 degrees of freedom, p = 0.001


@pytest.mark.parametrize(
    "selection, message",
    [
        ({"strategy": "notebook", "benchmark_mix": {"AIME": 1.0, "GPQA": 0.5}}, "names 'AIME', which is not a source"),
        ({"strategy": "notebook", "benchmark_mix": {"a": 0}}, "every weight must be above 0"),
        ({"strategy": "notebook", "uniform_picks": -1}, "selection.uniform_picks"),
        ({"strategy": "longest_first"}, "selection.strategy"),
    ],
)
def test_bad_selection_settings_are_one_sentence(tmp_path, selection, message):
    path = _config(tmp_path, [{"name": "a", "path": str(tmp_path / "a.jsonl")}], selection=selection)
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
