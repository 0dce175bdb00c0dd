"""Per-item scores from lm-eval's logged samples, so two profiles can be compared item by item.

A task's accuracy is the mean of one score per document; two profiles (or a profile and dense)
answer the same documents, so their difference is judged paired (`stats.paired_delta`,
`stats.paired_differ`), which is far tighter than comparing two accuracies with their own
standard errors. lm-eval logs one sample per document and filter; the scores kept are those of the
row's primary metric and filter (e.g. `exact_match` under `strict-match`), leaf tasks in order,
documents by `doc_id`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from sparseinfer_dse.stats import Interval, mean_interval, paired_delta


def leaf_scores(samples: Sequence[dict], metric: str) -> list[float]:
    """The `metric` ("name,filter") of each logged sample of one leaf task, by doc_id."""
    name, _, flt = metric.partition(",")
    rows = [s for s in samples if (not flt or s.get("filter") == flt) and name in s]
    rows.sort(key=lambda s: s["doc_id"])
    out = []
    for s in rows:
        v = s[name]
        out.append(float(v) if not isinstance(v, (list, tuple)) else float(np.mean(v)))
    return out


def item_scores(results: dict, leaves: Sequence[str], metric: Optional[str]) -> Optional[list[float]]:
    """Scores of every document of `leaves` (a task, or a group's leaf tasks), or None when lm-eval
    logged no samples or the metric is not a per-document number (e.g. a corpus-level BLEU)."""
    samples = results.get("samples") or {}
    if not metric or any(leaf not in samples for leaf in leaves):
        return None
    out: list[float] = []
    for leaf in leaves:
        scores = leaf_scores(samples[leaf], metric)
        if not scores or not all(math.isfinite(v) for v in scores):
            return None
        out.extend(scores)
    return out


def _mean_of_tasks(per_task: list[Interval]) -> Interval:
    """The mean over tasks of independent per-task estimates, in points: the half-widths add in
    quadrature around the mean estimate (each side on its own: bootstrap intervals are skewed)."""
    n = len(per_task)
    if n == 1:
        return per_task[0].scaled(100.0)
    est = sum(iv.estimate for iv in per_task) / n
    lo = est - math.sqrt(sum((iv.estimate - iv.low) ** 2 for iv in per_task)) / n
    hi = est + math.sqrt(sum((iv.high - iv.estimate) ** 2 for iv in per_task)) / n
    return Interval(est, lo, hi).scaled(100.0)


def accuracy_interval(items_per_task: dict[str, Sequence[float]]) -> Interval:
    """The mean over tasks of each task's mean item score, in points, with a bootstrap interval
    (each task's items resampled on their own: tasks are averaged, not pooled)."""
    return _mean_of_tasks([mean_interval(v) for v in items_per_task.values()])


def delta_interval(items: dict[str, Sequence[float]], reference: dict[str, Sequence[float]]) -> Interval:
    """Accuracy minus the reference's (e.g. dense) on the same items, in points, paired per task."""
    return _mean_of_tasks([paired_delta(items[t], reference[t]) for t in items])


def joined(items_per_task: dict[str, Sequence[float]], tasks: Sequence[str]) -> list[float]:
    """All tasks' items in one vector (task order), for a paired test between two profiles."""
    out: list[float] = []
    for t in tasks:
        out.extend(items_per_task[t])
    return out


def pack(items: Sequence[float]) -> Any:
    """Compact storage of an item vector: a '0'/'1' string for binary scores, else the list."""
    if all(v in (0.0, 1.0) for v in items):
        return "".join("1" if v else "0" for v in items)
    return [round(float(v), 6) for v in items]


def unpack(stored: Any) -> list[float]:
    if isinstance(stored, str):
        return [1.0 if c == "1" else 0.0 for c in stored]
    return [float(v) for v in stored]
