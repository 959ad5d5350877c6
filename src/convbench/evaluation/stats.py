"""Uncertainty for a comparison on one shared test set.

Two models scored on the same images are *paired*: McNemar's exact test uses only
the images on which they disagree, which is far more sensitive than comparing two
independent confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

_CHUNK_ELEMENTS = 4_000_000
"""Resampled indices held in memory at once (int64: about 32 MB)."""


def bootstrap_ci(
    correct: np.ndarray, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``correct`` (per-image 0/1 hits = accuracy).

    Resamples image indices with replacement from a seeded ``numpy`` Generator,
    vectorised in chunks so a large test set never needs ``resamples * n`` indices at once.
    """
    values = np.asarray(correct, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("bootstrap_ci needs resamples >= 1 and 0 < confidence < 1")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of model A against model B on the same images."""

    a_only: int
    """b: images A got right and B got wrong."""
    b_only: int
    """c: images B got right and A got wrong."""
    both: int
    neither: int
    p_value: float


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of ``b`` vs ``c`` discordant pairs at 1/2.

    ``p = min(1, 2 * P[X <= min(b, c)])`` with ``X ~ Binomial(b + c, 1/2)``; no
    discordant pairs means no evidence of a difference (p = 1).
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))


def paired_test(correct_a: np.ndarray, correct_b: np.ndarray) -> PairedTest:
    """The 2x2 contingency table of two models' per-image hits and its McNemar p-value."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same images: {a.shape} vs {b.shape}")
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    return PairedTest(
        a_only=a_only,
        b_only=b_only,
        both=int(np.sum(a & b)),
        neither=int(np.sum(~a & ~b)),
        p_value=mcnemar_exact(a_only, b_only),
    )


def step_volatility(values: np.ndarray) -> float:
    """Standard deviation of epoch-to-epoch changes (NaN with fewer than two changes: undefined).

    Used on validation accuracy: a curve that climbs smoothly scores low even if it
    climbs far, one that zig-zags scores high.
    """
    steps = np.diff(np.asarray(values, dtype=np.float64))
    return float(np.std(steps, ddof=1)) if steps.size >= 2 else float("nan")
