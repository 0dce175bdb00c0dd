"""How a (possibly distributed) study stands, read-only: trials per worker, running trials, the front.

The front is the one the outputs write (search/outputs.py `pareto_frame`: differences inside the
intervals are ties)."""

from __future__ import annotations

from typing import Any, Optional

import optuna

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.outputs import accuracy_column, pareto_frame, trials_frame
from sparseinfer_dse.search.storage import GRACE_PERIOD, heartbeat_ages, is_lost, open_storage, redact, study_counts

STATES = {"COMPLETE": "complete", "RUNNING": "running", "FAIL": "failed", "WAITING": "waiting", "PRUNED": "pruned"}


def study_status(url: str, name: str, grace_period: Optional[float] = None) -> dict[str, Any]:
    """Trials per worker and state, running trials with their heartbeat age, the current front.

    A RUNNING trial whose heartbeat is older than the grace period (`grace_period`, else the one the
    study's last worker ran with, else the default) is counted as lost at once: its worker is dead
    or cut off, and the next worker to look fails it and re-enqueues its profile."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rdb = open_storage(url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        names = sorted(optuna.get_all_study_names(rdb))
        raise UserError(f"no study {name!r} in {redact(url)} (studies there: {', '.join(names) or 'none'})") from None
    identity = study.user_attrs.get("identity") or {}
    fidelity = identity.get("fidelity", "proxy")
    trials = study.get_trials(deepcopy=False)
    workers: dict[str, dict[str, Any]] = {}
    for t in trials:
        w = t.user_attrs.get("worker") or ("(queue)" if t.state.name == "WAITING" else "(unknown)")
        row = workers.setdefault(w, {"complete": 0, "running": 0, "failed": 0, "lost": 0, "waiting": 0,
                                     "device": None})
        key = STATES.get(t.state.name, t.state.name.lower())
        row[key] = row.get(key, 0) + 1
        row["device"] = row["device"] or t.user_attrs.get("device")
        if is_lost(t):
            row["lost"] += 1
    ages = heartbeat_ages(study)
    grace = float(grace_period if grace_period is not None else study.user_attrs.get("grace_period", GRACE_PERIOD))
    running = [{"trial": t.number, "worker": t.user_attrs.get("worker"), "started": t.datetime_start,
                "heartbeat_age_s": None if t.number not in ages else round(ages[t.number], 1),
                "lost": t.number in ages and ages[t.number] > grace}
               for t in trials if t.state.name == "RUNNING"]
    totals = study_counts(study, trials)
    for r in running:  # not yet failed by a worker, but no heartbeat for longer than the grace period
        if r["lost"]:
            totals["running"] -= 1
            totals["lost"] += 1
            row = workers.get(r["worker"] or "(unknown)")
            if row is not None:
                row["running"] -= 1
                row["lost"] += 1
    df = trials_frame(study)
    front_rows: list[dict[str, Any]] = []
    if not df.empty:
        front = pareto_frame(study, df, fidelity, study.user_attrs.get("dense"))
        col = accuracy_column(df, fidelity)
        for _, r in front.iterrows():
            seed, worker = r.get("seed"), r.get("worker")
            front_rows.append({"trial": int(r["trial"]), "latency_ms": float(r["latency_ms"]),
                               "latency_ci_low_ms": _opt(r.get("latency_ci_low_ms")),
                               "latency_ci_high_ms": _opt(r.get("latency_ci_high_ms")),
                               "accuracy": float(r["accuracy"]), "accuracy_low": _opt(r.get("accuracy_low")),
                               "accuracy_high": _opt(r.get("accuracy_high")), "accuracy_column": col,
                               "vs_dense": r.get("vs_dense") if isinstance(r.get("vs_dense"), str) else None,
                               "worker": worker if isinstance(worker, str) else None,
                               "seed": seed if isinstance(seed, str) else None})
    return {"study": name, "storage": redact(url), "fidelity": fidelity, "model": identity.get("model"),
            "device_kind": identity.get("device_kind"), "budget": study.user_attrs.get("budget"),
            "totals": totals, "workers": workers, "running": running, "front": front_rows, "grace_period_s": grace}


def _opt(v: Any) -> Any:
    """A float, or None for a missing value (NaN in the frame)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f
