"""McNemar's exact test and the percentile bootstrap, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from convbench.evaluation.stats import bootstrap_ci, mcnemar_exact, paired_test, step_volatility


def test_mcnemar_matches_hand_computed_binomial_tail() -> None:
    # b=1, c=9: p = 2 * (C(10,0) + C(10,1)) / 2**10 = 2 * 11 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375, abs=1e-12)
    assert mcnemar_exact(9, 1) == pytest.approx(0.021484375, abs=1e-12)
    # b=2, c=8: 2 * (1 + 10 + 45) / 1024
    assert mcnemar_exact(2, 8) == pytest.approx(2 * 56 / 1024, abs=1e-12)
    # b=0, c=6: 2 / 64
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64, abs=1e-12)


@pytest.mark.parametrize("b,c", [(0, 0), (5, 5), (40, 40), (4, 5)])
def test_mcnemar_is_one_without_evidence(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == 1.0


def test_mcnemar_large_counts_match_exact_sum() -> None:
    b, c = 30, 60
    exact = 2 * sum(math.comb(b + c, k) for k in range(b + 1)) / 2 ** (b + c)
    assert mcnemar_exact(b, c) == pytest.approx(exact, rel=1e-9)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_paired_test_builds_the_contingency_table() -> None:
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    b = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=bool)
    t = paired_test(a, b)
    assert (t.a_only, t.b_only, t.both, t.neither) == (3, 1, 4, 2)
    assert t.p_value == pytest.approx(2 * (1 + 4) / 16)
    with pytest.raises(ValueError):
        paired_test(a, b[:5])


def test_bootstrap_contains_estimate_and_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    small = rng.random(200) < 0.8
    large = rng.random(5000) < 0.8
    lo_s, hi_s = bootstrap_ci(small, resamples=2000, seed=0)
    lo_l, hi_l = bootstrap_ci(large, resamples=2000, seed=0)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # width ~ 1/sqrt(n): 5000/200 = 25 -> 5x narrower
    # the 95 % width is close to the normal approximation 2 * 1.96 * sqrt(p(1-p)/n)
    p = large.mean()
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / large.size), rel=0.15)


def test_bootstrap_is_seeded_and_chunked_consistently(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.arange(100) % 3 == 0
    first = bootstrap_ci(values, resamples=500, seed=7)
    assert bootstrap_ci(values, resamples=500, seed=7) == first
    assert bootstrap_ci(values, resamples=500, seed=8) != first
    import convbench.evaluation.stats as stats

    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 1000)  # 10 resamples per chunk: same stream, same answer
    assert bootstrap_ci(values, resamples=500, seed=7) == first


def test_bootstrap_of_a_perfect_model_is_degenerate() -> None:
    assert bootstrap_ci(np.ones(50, dtype=bool)) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))


def test_step_volatility_is_std_of_changes() -> None:
    assert step_volatility(np.array([0.5, 0.6, 0.7, 0.8])) == pytest.approx(0.0, abs=1e-12)
    assert step_volatility(np.array([0.5, 0.7, 0.5, 0.7])) == pytest.approx(np.std([0.2, -0.2, 0.2], ddof=1))
    assert math.isnan(step_volatility(np.array([0.5, 0.6])))  # one change has no spread
