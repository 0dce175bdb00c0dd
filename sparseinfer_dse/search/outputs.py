"""What a search leaves in its folder: trials.csv, pareto.csv, profiles/, study.json.

Everything is derived from the optuna storage, so it can be rewritten at any time (after Ctrl-C,
by `report`, by another worker) without losing anything. The front is judged with each trial's
intervals and per-item scores (search/pareto.py), which live in the storage; pareto.csv records the
result with the intervals and, per point, its verdict against dense and against the paper's seed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from sparseinfer_dse.atomic import replaced, replaced_dir, write_text
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.identity import ModelIdentity
from sparseinfer_dse.search.pareto import Measured, front_mask, verdict, versus_dense
from sparseinfer_dse.search.storage import open_storage
from sparseinfer_dse.search.trial_measures import ITEM_KEYS, LM_EVAL, OBJECTIVE, lm_eval_items, trial_measured
from sparseinfer_dse.search.trial_profile import level_columns, stored_keys, trial_profile

_SCALARS = (int, float, str, bool, type(None))
# The seed `vs_seed` compares with: the paper's heuristic for sparseinfer, the published uniform 50%
# allocation for the calibrated methods (a study holds the seeds of one method only).
REFERENCE_SEEDS = ("paper-1.03", "uniform-50%")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, objectives, every attribute but the per-item scores, one column per
    layer's alpha (alpha_000..., from the trial's stored profile)."""
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
            if key in stored_keys() or key in ITEM_KEYS:
                continue
            row[key] = json.dumps(value) if not isinstance(value, _SCALARS) else value
        for key, value in sorted(t.params.items()):
            row[f"param_{key}"] = value
        row.update(level_columns(trial_profile(t.user_attrs)))
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_column(df: pd.DataFrame, fidelity: str) -> str:
    """Which column the front is judged on: lm-eval accuracy when measured, else the proxy score."""
    if fidelity in ("full", "staged") and "accuracy_full" in df:
        return "accuracy_full"
    return "objective_accuracy"


def judged_by(fidelity: str, trials: list[FrozenTrial]) -> str:
    """LM_EVAL when the study measures lm-eval accuracy (and some trial has it), else OBJECTIVE."""
    if fidelity in ("full", "staged") and any("accuracy_full" in t.user_attrs for t in trials):
        return LM_EVAL
    return OBJECTIVE


def judged_trials(study: optuna.Study, fidelity: str) -> tuple[list[FrozenTrial], list[Measured], str]:
    """The finished trials the front is judged over, their points and which accuracy they use."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    which = judged_by(fidelity, done)
    if which == LM_EVAL:
        done = [t for t in done if "accuracy_full" in t.user_attrs]
    return done, [trial_measured(t, which) for t in done], which


def dense_measured(dense: dict[str, Any], which: str) -> Optional[Measured]:
    """The dense reference as a point: its latency interval over runs; lm-eval accuracy with its
    per-document scores, or the proxy's exact score (KL 0, full agreement)."""
    if not dense or dense.get("ms") is None:
        return None
    lat = (dense["ms"], dense.get("ci_low_ms"), dense.get("ci_high_ms"))
    if which == LM_EVAL:
        if dense.get("accuracy_full") is None:
            return None
        return Measured(lat[0], dense["accuracy_full"], lat[1], lat[2], dense.get("accuracy_ci_low"),
                        dense.get("accuracy_ci_high"), lm_eval_items(dense.get("items")))
    return Measured(lat[0], dense["score"], lat[1], lat[2])


def _ratio(trial: FrozenTrial) -> Optional[tuple[float, float, float]]:
    """The trial's paired sparse/dense latency ratio and its interval, if recorded."""
    a = trial.user_attrs
    if a.get("latency_ratio_ci_low") is None or a.get("latency_ratio_ci_high") is None:
        return None
    return a.get("latency_ratio", 1.0), a["latency_ratio_ci_low"], a["latency_ratio_ci_high"]


def pareto_frame(study: optuna.Study, df: pd.DataFrame, fidelity: str, dense: Optional[dict[str, Any]] = None) -> pd.DataFrame:
    """The front's rows of `df` (trials_frame) with `accuracy`, its interval (`accuracy_low`/`_high`)
    and the verdicts `vs_dense` and `vs_seed` (the method's reference seed, REFERENCE_SEEDS), fastest first."""
    done, points, which = judged_trials(study, fidelity)
    if not done:
        return df.iloc[0:0].assign(accuracy=[])
    mask = front_mask(points)
    dense_pt = dense_measured(dense or {}, which)
    seed = next(((t, p) for t, p in zip(done, points) if t.user_attrs.get("seed") in REFERENCE_SEEDS), None)
    rows = []
    for t, p, keep in zip(done, points, mask):
        if not keep:
            continue
        lo, hi = p.acc_interval
        rows.append({"trial": t.number, "accuracy": p.accuracy, "accuracy_low": lo, "accuracy_high": hi,
                     "vs_dense": "" if dense_pt is None else versus_dense(p, dense_pt, _ratio(t)),
                     "vs_seed": "" if seed is None or seed[0].number == t.number else verdict(p, seed[1])})
    extra = pd.DataFrame(rows)
    front = df.merge(extra, on="trial", how="inner")
    cols = ["trial", "state", "accuracy", "accuracy_low", "accuracy_high", "vs_dense", "vs_seed"]
    front = front[cols + [c for c in front.columns if c not in cols]]
    return front.sort_values("latency_ms")


def write_profiles(front: pd.DataFrame, study: optuna.Study, folder: Path, fidelity: str,
                   identity: Optional[ModelIdentity], measurement: Optional[dict[str, Any]]) -> None:
    """profiles/trial-NNNN.json for every front point, the folder replaced whole."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    with replaced_dir(folder) as tmp:
        for _, row in front.iterrows():
            n = int(row["trial"])
            metrics: dict[str, Any] = {"trial": n, "latency_ms": float(row["latency_ms"]),
                                       "accuracy": float(row["accuracy"]), "fidelity": fidelity}
            for key in ("latency_ci_low_ms", "latency_ci_high_ms", "latency_ratio", "accuracy_low", "accuracy_high",
                        "accuracy_delta", "accuracy_delta_ci_low", "accuracy_delta_ci_high", "vs_dense", "vs_seed"):
                if key in row and pd.notna(row[key]) and row[key] != "":
                    metrics[key] = row[key] if isinstance(row[key], str) else float(row[key])
            if measurement:
                metrics["measurement"] = measurement
            stored = trial_profile(by_number[n].user_attrs)
            replace(stored, model=identity, name=f"trial-{n}", metrics=metrics).save(tmp / f"trial-{n:04d}.json")


def write_outputs(study: optuna.Study, out: Path, fidelity: str, identity: Optional[ModelIdentity],
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Write trials.csv, pareto.csv, profiles/ and study.json; returns a short summary."""
    out.mkdir(parents=True, exist_ok=True)
    df = trials_frame(study)
    with replaced(out / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    front = pareto_frame(study, df, fidelity, meta.get("dense")) if not df.empty else df
    with replaced(out / "pareto.csv") as tmp:
        front.to_csv(tmp, index=False)
    write_profiles(front, study, out / "profiles", fidelity, identity, meta.get("measurement"))
    states = df["state"].value_counts().to_dict() if not df.empty else {}
    dense = {k: v for k, v in (meta.get("dense") or {}).items() if k != "items"}  # per-item scores stay in the storage
    meta = {**meta, "dense": dense, "trials": states, "front_size": int(len(front)), "fidelity": fidelity}
    write_text(out / "study.json", json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def rewrite_outputs(out: Path, storage: Optional[str] = None) -> Optional[dict[str, Any]]:
    """Write trials.csv, pareto.csv, profiles/ and study.json again from the study's storage (as the
    folder's study.json names it, or `storage`); None when the folder has no reachable storage."""
    path = out / "study.json"
    if not path.is_file():
        raise UserError(f"{out} is not a search output folder (no study.json)")
    meta = json.loads(path.read_text())
    url = storage or (meta.get("options") or {}).get("storage")
    if url is None or "***" in str(url):
        db = out / "study.db"
        if not db.is_file():
            return None
        url = f"sqlite:///{db.resolve()}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name=meta.get("study_name", "demo"), storage=open_storage(url, None))
    except KeyError:
        return None
    ident = meta.get("identity") or {}
    identity = ModelIdentity(ident["name"], ident["config_hash"], int(ident["num_layers"])) if ident else None
    meta = {k: v for k, v in meta.items() if k not in ("trials", "front_size")}
    meta["dense"] = study.user_attrs.get("dense") or meta.get("dense")
    return write_outputs(study, out, meta.get("fidelity", "proxy"), identity, meta)
