"""Metrics against values worked by hand from the paper's definitions (s1 §3.2)."""

from __future__ import annotations

import math

import pytest

from s1.evaluate.metrics import accuracy, bootstrap_ci, control, majority_vote, pass_at_k, performance, scaling

# Three settings: 1000 tokens -> 30%, 2000 -> 40%, 4000 -> 45%.
POINTS = [(2000, 40.0), (1000, 30.0), (4000, 45.0)]


def test_scaling_per_1k_tokens_by_hand():
    # pairs: (1000,2000): 10/1000*1000 = 10; (1000,4000): 15/3000*1000 = 5; (2000,4000): 5/2000*1000 = 2.5
    assert scaling(POINTS, "1k") == pytest.approx((10 + 5 + 2.5) / 3)


def test_scaling_per_doubling_by_hand():
    # pairs: 10 / log2(2) = 10; 15 / log2(4) = 7.5; 5 / log2(2) = 5
    assert scaling(POINTS, "doubling") == pytest.approx((10 + 7.5 + 5) / 3)


def test_scaling_is_negative_when_accuracy_falls_and_undefined_for_one_point():
    assert scaling([(100, 50.0), (200, 40.0)], "doubling") == pytest.approx(-10)
    assert scaling([(100, 50.0)]) is None


def test_control_counts_only_settings_with_bounds():
    assert control([True, True, False, None]) == pytest.approx(100 * 2 / 3)
    assert control([None]) is None


def test_performance_and_accuracy():
    assert performance([30.0, 56.7, 45.0]) == 56.7
    nan = float("nan")  # a setting with no counted sample (no rejection-sampled draw fit): left out, in any order
    assert performance([nan, 40.0, 55.0]) == performance([40.0, nan, 55.0]) == 55.0
    assert performance([nan]) is None and performance([]) is None
    assert accuracy([True, False, False, True]) == 50.0


def test_bootstrap_interval_contains_the_mean_and_narrows_with_n():
    small = [True, False] * 5
    large = [True, False] * 200
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= 50 <= hi_s and lo_l <= 50 <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    assert bootstrap_ci([True] * 10) == (100.0, 100.0)


def test_majority_vote_picks_the_largest_class_first_on_ties():
    # classes as Grader.classes gives them: sample i's class is the index of its first equivalent answer
    assert majority_vote([0, 1, 1, None]) == 1
    assert majority_vote([0, 1]) == 0
    assert majority_vote([None, None]) is None


def test_cluster_bootstrap_resamples_problems_not_samples():
    """8 samples per problem, each problem all right or all wrong: the samples are not independent, and an
    interval over 20 problems must be as wide as one over 20 single samples, not that of 160 samples."""
    per_problem = [[True] * 8 if i % 2 else [False] * 8 for i in range(20)]
    cluster = bootstrap_ci(per_problem)
    naive = bootstrap_ci([c for g in per_problem for c in g])
    single = bootstrap_ci([g[0] for g in per_problem])
    assert cluster[1] - cluster[0] > 1.5 * (naive[1] - naive[0])
    assert cluster == pytest.approx(single, abs=0.01)


def test_pass_at_k_unbiased_estimator():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 0, 3) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0
    assert math.isclose(pass_at_k(5, 2, 1), 0.4)
