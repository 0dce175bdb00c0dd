"""Confidence intervals and paired tests, the few the tool's verdicts rest on.

* `median_interval(xs)`: a distribution-free interval for a median (order statistics of the
  binomial): latency is judged on the median of paired per-run ratios, whose distribution has
  outliers (a run hit by another process), so neither a normal nor a bootstrap interval of n=10
  samples would hold its level.
* `mean_interval(xs)`: a percentile bootstrap of a mean (per-item accuracy, per-sequence proxy).
* `paired_delta(a, b)`: mean(a - b) over the same items with a paired bootstrap interval.
* `paired_differ(a, b)`: is a different from b on the same items? Exact McNemar (binary items)
  or the paired bootstrap interval excluding 0 (continuous ones).

Bootstraps are seeded, so one set of samples always gives the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 4000
_SEED = 20241118


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval, and the interval's actual coverage where known."""

    estimate: float
    low: float
    high: float
    coverage: Optional[float] = None

    def scaled(self, factor: float) -> "Interval":
        return Interval(self.estimate * factor, self.low * factor, self.high * factor, self.coverage)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def _binom_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n


def median_interval(xs: Sequence[float], level: float = LEVEL) -> Interval:
    """The sample median and the order-statistic interval [x(k), x(n+1-k)] with coverage >= level
    (the widest one, min..max, when n is too small to reach it; its coverage is then 1 - 2^(1-n))."""
    x = np.sort(np.asarray(xs, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("no samples")
    med = float(np.median(x))
    if n == 1:
        return Interval(med, med, med, 0.0)
    k = 1  # 1-based rank of the lower bound
    while k + 1 <= n // 2 and 2 * _binom_cdf(k, n) <= 1.0 - level:
        k += 1
    coverage = 1.0 - 2 * _binom_cdf(k - 1, n)
    return Interval(med, float(x[k - 1]), float(x[n - k]), coverage)


def _resample_means(values: np.ndarray, weights: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    w = weights[idx]
    return (values[idx] * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-300)


def mean_interval(xs: Sequence[float], level: float = LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = _SEED, weights: Optional[Sequence[float]] = None) -> Interval:
    """The (weighted) mean and its percentile-bootstrap interval (items resampled with replacement;
    `weights`, e.g. tokens per sequence, travel with their items)."""
    x = np.asarray(xs, dtype=float)
    if len(x) == 0:
        raise ValueError("no samples")
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    means = _resample_means(x, w, resamples, seed)
    tail = (1.0 - level) / 2.0
    est = float((x * w).sum() / w.sum())
    return Interval(est, float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail)))


def paired_delta(a: Sequence[float], b: Sequence[float], level: float = LEVEL,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = _SEED) -> Interval:
    """mean(a) - mean(b) over the same items, with a paired bootstrap interval."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length ({len(x)} vs {len(y)})")
    return mean_interval(x - y, level, resamples, seed)


def is_binary(xs: Sequence[float]) -> bool:
    x = np.asarray(xs, dtype=float)
    return bool(np.all((x == 0.0) | (x == 1.0)))


def mcnemar_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided McNemar p-value for paired binary outcomes (a sign test on discordant items)."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int(np.sum(x & ~y)), int(np.sum(~x & y))
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_cdf(min(only_a, only_b), n))


def paired_differ(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> int:
    """+1 if a is higher than b on the same items beyond chance, -1 if lower, 0 if not different."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length ({len(x)} vs {len(y)})")
    diff = float(np.mean(x - y)) if len(x) else 0.0
    if is_binary(x) and is_binary(y):
        return (1 if diff > 0 else -1) if mcnemar_p(x, y) < 1.0 - level else 0
    iv = paired_delta(x, y, level)
    return 1 if iv.low > 0 else -1 if iv.high < 0 else 0


def intervals_differ(a_low: float, a_high: float, b_low: float, b_high: float) -> int:
    """+1 if interval a lies wholly above b, -1 if wholly below, 0 if they overlap."""
    if a_low > b_high:
        return 1
    if a_high < b_low:
        return -1
    return 0
