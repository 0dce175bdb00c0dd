"""A trial's stored measurements as the Pareto module judges them (search/pareto.py `Measured`).

The one place that knows which user attrs hold a trial's intervals and per-item scores:
`latency_ci_low_ms`/`latency_ci_high_ms`; lm-eval `accuracy_full` with `accuracy_ci_low`/
`accuracy_ci_high` and `accuracy_items` ({task: packed scores}); the proxy `proxy_score` with
`proxy_ci_low`/`proxy_ci_high` and `proxy_items`. Trials of studies made before intervals were
recorded fall back to `latency_noise_ms` and exact accuracies.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from sparseinfer_dse.eval.items import unpack
from sparseinfer_dse.search.pareto import Measured

ITEM_KEYS = ("accuracy_items", "proxy_items")  # per-item data: kept in the storage, not in trials.csv
LM_EVAL, OBJECTIVE = "lm-eval", "objective"


def _num(attrs: Mapping[str, Any], key: str) -> Optional[float]:
    v = attrs.get(key)
    return None if v is None else float(v)


def lm_eval_items(stored: Any) -> Optional[tuple[float, ...]]:
    """{task: packed} -> one vector (tasks in stored order), for paired tests."""
    if not stored:
        return None
    out: list[float] = []
    for task in stored:
        out.extend(unpack(stored[task]))
    return tuple(out)


def latency_interval(attrs: Mapping[str, Any], ms: float) -> tuple[Optional[float], Optional[float]]:
    lo, hi = _num(attrs, "latency_ci_low_ms"), _num(attrs, "latency_ci_high_ms")
    if lo is None and "latency_noise_ms" in attrs:  # studies made before intervals were recorded
        noise = float(attrs["latency_noise_ms"])
        lo, hi = ms - noise, ms + noise
    return lo, hi


def measured(attrs: Mapping[str, Any], latency_ms: float, accuracy: float, which: str) -> Measured:
    """`which`: LM_EVAL (accuracy_full and its interval) or OBJECTIVE (the trial's second objective:
    lm-eval under full fidelity, else the proxy score)."""
    lo, hi = latency_interval(attrs, latency_ms)
    uses_lm_eval = which == LM_EVAL or (attrs.get("fidelity") or {}).get("accuracy") == "lm-eval"
    if uses_lm_eval:
        a_lo, a_hi = _num(attrs, "accuracy_ci_low"), _num(attrs, "accuracy_ci_high")
        items = lm_eval_items(attrs.get("accuracy_items"))
    else:
        a_lo, a_hi = _num(attrs, "proxy_ci_low"), _num(attrs, "proxy_ci_high")
        stored = attrs.get("proxy_items")
        items = tuple(unpack(stored)) if stored is not None else None
    return Measured(latency_ms, accuracy, lo, hi, a_lo, a_hi, items)


def trial_measured(trial: Any, which: str = OBJECTIVE) -> Measured:
    """A finished optuna trial's point: its objective values, or (LM_EVAL) its lm-eval accuracy."""
    acc = trial.values[1] if which == OBJECTIVE else trial.user_attrs["accuracy_full"]
    return measured(trial.user_attrs, trial.values[0], acc, which)
