"""Pareto fronts of (latency, accuracy) where latencies within measurement noise are ties.

Optuna's own front uses exact comparisons; a trial 0.1% faster by noise would then dominate. Here
trial A is faster than B only if B's latency exceeds A's by more than the larger of their noises.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def dominates(lat_a: float, acc_a: float, noise_a: float, lat_b: float, acc_b: float, noise_b: float) -> bool:
    tol = max(noise_a, noise_b)
    faster = lat_a < lat_b - tol
    not_slower = lat_a <= lat_b + tol
    return not_slower and acc_a >= acc_b and (faster or acc_a > acc_b)


def front_mask(latency: Sequence[float], accuracy: Sequence[float], noise: Sequence[float]) -> np.ndarray:
    """True for the points no other point dominates (noise-aware in latency, exact in accuracy)."""
    lat, acc, nz = (np.asarray(v, dtype=float) for v in (latency, accuracy, noise))
    n = len(lat)
    keep = np.ones(n, dtype=bool)
    for b in range(n):
        for a in range(n):
            if a != b and dominates(lat[a], acc[a], nz[a], lat[b], acc[b], nz[b]):
                keep[b] = False
                break
    return keep


def hypervolume_2d(latency: Sequence[float], accuracy: Sequence[float], ref_latency: float, ref_accuracy: float) -> float:
    """Area dominated by the points (minimise latency, maximise accuracy) inside the reference box."""
    pts = sorted((l, a) for l, a in zip(latency, accuracy) if l < ref_latency and a > ref_accuracy)
    area, best_acc = 0.0, ref_accuracy
    for i, (lat, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_latency
        area += (nxt - lat) * (best_acc - ref_accuracy)
    return area
