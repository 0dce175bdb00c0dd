"""What a search leaves in its folder: trials.csv, pareto.csv, profiles/, study.json.

Everything is derived from the optuna storage, so it can be rewritten at any time (after Ctrl-C,
by `report`, by another worker) without losing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import optuna
import pandas as pd

from sparseinfer_dse.atomic import replaced, write_text
from sparseinfer_dse.models.identity import ModelIdentity
from sparseinfer_dse.engine.profile import AlphaProfile
from sparseinfer_dse.search.pareto import front_mask
from sparseinfer_dse.search.trial_profile import stored_keys, trial_profile

_SCALARS = (int, float, str, bool, type(None))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, objectives, every attribute, one column per layer's alpha (alpha_000...,
    from the trial's stored profile)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "latency_ms": t.values[0] if t.values else None,
            "objective_accuracy": t.values[1] if t.values else None,
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "worker": t.user_attrs.get("worker"),
        }
        for key, value in sorted(t.user_attrs.items()):
            if key in stored_keys():
                continue
            row[key] = json.dumps(value) if not isinstance(value, _SCALARS) else value
        for key, value in sorted(t.params.items()):
            row[f"param_{key}"] = value
        profile = trial_profile(t.user_attrs)
        for i, a in enumerate(profile.alphas if profile else ()):
            row[f"alpha_{i:03d}"] = a
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_column(df: pd.DataFrame, fidelity: str) -> str:
    """Which column the front is judged on: lm-eval accuracy when measured, else the proxy score."""
    if fidelity in ("full", "staged") and "accuracy_full" in df:
        return "accuracy_full"
    return "objective_accuracy"


def pareto_frame(df: pd.DataFrame, fidelity: str) -> pd.DataFrame:
    col = accuracy_column(df, fidelity)
    ok = df[(df["state"] == "COMPLETE") & df[col].notna()] if col in df else df.iloc[0:0]
    if ok.empty:
        return ok.assign(accuracy=[])
    noise = ok["latency_noise_ms"].fillna(0.0) if "latency_noise_ms" in ok else [0.0] * len(ok)
    mask = front_mask(ok["latency_ms"], ok[col], noise)
    front = ok[mask].copy()
    front.insert(2, "accuracy", front[col])
    return front.sort_values("latency_ms")


def write_outputs(study: optuna.Study, out: Path, fidelity: str, identity: Optional[ModelIdentity],
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Write trials.csv, pareto.csv, profiles/ and study.json; returns a short summary."""
    out.mkdir(parents=True, exist_ok=True)
    df = trials_frame(study)
    with replaced(out / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    front = pareto_frame(df, fidelity) if not df.empty else df
    with replaced(out / "pareto.csv") as tmp:
        front.to_csv(tmp, index=False)
    prof_dir = out / "profiles"
    prof_dir.mkdir(exist_ok=True)
    for old in prof_dir.glob("trial-*.json"):
        old.unlink(missing_ok=True)  # another worker writing the same folder may have removed it
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for _, row in front.iterrows():
        metrics = {"trial": int(row["trial"]), "latency_ms": float(row["latency_ms"]), "accuracy": float(row["accuracy"]),
                   "fidelity": fidelity}
        if "latency_ratio" in row and pd.notna(row["latency_ratio"]):
            metrics["latency_ratio"] = float(row["latency_ratio"])
        stored = trial_profile(by_number[int(row["trial"])].user_attrs)
        AlphaProfile(stored.alphas, identity, f"trial-{int(row['trial'])}", metrics).save(
            prof_dir / f"trial-{int(row['trial']):04d}.json")
    states = df["state"].value_counts().to_dict() if not df.empty else {}
    meta = {**meta, "trials": states, "front_size": int(len(front)), "fidelity": fidelity}
    write_text(out / "study.json", json.dumps(meta, indent=2, default=str) + "\n")
    return meta
