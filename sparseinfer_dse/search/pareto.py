"""Pareto fronts of (latency, accuracy) where a difference inside the measurement's noise is a tie.

Optuna's own front compares raw values, so a trial faster by noise would dominate. Here each point
carries its 95% intervals, and one point beats another on an objective only when the evidence says
so:

* latency: the two intervals do not overlap (each is the order-statistic interval of a median of
  paired per-run ratios, `sparseinfer_dse.stats.median_interval`);
* accuracy: when both points carry per-item scores on the same items (lm-eval documents, proxy
  calibration sequences), a paired test (`stats.paired_differ`: exact McNemar for right/wrong
  items); otherwise the two intervals do not overlap.

A dominates B when A is not beaten by B on either objective and beats B on at least one. The front
is every point no other point dominates: the profiles the measurements cannot rule out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from sparseinfer_dse.stats import intervals_differ, paired_differ


@dataclass(frozen=True)
class Measured:
    """One profile's objectives with their 95% intervals (latency: lower is better; accuracy:
    higher is better); `items`: per-item accuracy scores for paired tests, if known."""

    latency: float
    accuracy: float
    latency_low: Optional[float] = None
    latency_high: Optional[float] = None
    accuracy_low: Optional[float] = None
    accuracy_high: Optional[float] = None
    items: Optional[tuple[float, ...]] = None

    @property
    def lat_interval(self) -> tuple[float, float]:
        return (self.latency if self.latency_low is None else self.latency_low,
                self.latency if self.latency_high is None else self.latency_high)

    @property
    def acc_interval(self) -> tuple[float, float]:
        return (self.accuracy if self.accuracy_low is None else self.accuracy_low,
                self.accuracy if self.accuracy_high is None else self.accuracy_high)

    def shifted(self, accuracy: float) -> "Measured":
        """The same point granted `accuracy` more (its items dropped: no longer paired data)."""
        lo, hi = self.acc_interval
        return replace(self, accuracy=self.accuracy + accuracy, accuracy_low=lo + accuracy,
                       accuracy_high=hi + accuracy, items=None)


def faster(a: Measured, b: Measured) -> int:
    """+1 if a is faster than b beyond noise, -1 if slower, 0 if they cannot be told apart."""
    return -intervals_differ(*a.lat_interval, *b.lat_interval)


def more_accurate(a: Measured, b: Measured) -> int:
    """+1 if a is more accurate than b beyond noise, -1 if less, 0 if they cannot be told apart."""
    if a.items is not None and b.items is not None and len(a.items) == len(b.items):
        return paired_differ(a.items, b.items)
    return intervals_differ(*a.acc_interval, *b.acc_interval)


def dominates(a: Measured, b: Measured) -> bool:
    lat, acc = faster(a, b), more_accurate(a, b)
    return lat >= 0 and acc >= 0 and (lat > 0 or acc > 0)


def front_mask(points: Sequence[Measured]) -> np.ndarray:
    """True for the points no other point dominates."""
    n = len(points)
    keep = np.ones(n, dtype=bool)
    for j in range(n):
        keep[j] = not any(i != j and dominates(points[i], points[j]) for i in range(n))
    return keep


def verdict(a: Measured, b: Measured) -> str:
    """How a compares with b, in words: 'faster; accuracy same', 'latency same; less accurate'..."""
    lat = {1: "faster", -1: "slower", 0: "latency same"}[faster(a, b)]
    acc = {1: "more accurate", -1: "less accurate", 0: "accuracy same"}[more_accurate(a, b)]
    return f"{lat}; {acc}"


def exact_reference(ref: Measured, n_items: int) -> Measured:
    """A reference whose accuracy is exact (no interval and no items: the proxy's dense score, KL 0)
    as that value on each of `n_items` items, so a profile is compared with it paired."""
    lo, hi = ref.acc_interval
    if ref.items is None and n_items and lo == hi:
        return replace(ref, items=(ref.accuracy,) * n_items)
    return ref


def versus_dense(point: Measured, dense: Measured, ratio: Optional[tuple[float, float, float]]) -> str:
    """`verdict` against dense. With `ratio` (the point's paired sparse/dense ratio and its interval,
    from runs that timed dense alongside) latency is judged on it against 1, not against a dense
    figure measured at another time; accuracy paired on the same items."""
    ref = exact_reference(dense, len(point.items) if point.items else 0)
    if ratio is None:
        return verdict(point, ref)
    mine = replace(point, latency=ratio[0], latency_low=ratio[1], latency_high=ratio[2])
    return verdict(mine, replace(ref, latency=1.0, latency_low=1.0, latency_high=1.0))


def hypervolume_2d(latency: Sequence[float], accuracy: Sequence[float], ref_latency: float, ref_accuracy: float) -> float:
    """Area dominated by the points (minimise latency, maximise accuracy) inside the reference box."""
    pts = sorted((l, a) for l, a in zip(latency, accuracy) if l < ref_latency and a > ref_accuracy)
    area, best_acc = 0.0, ref_accuracy
    for i, (lat, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_latency
        area += (nxt - lat) * (best_acc - ref_accuracy)
    return area
