"""Pick profiles from a finished study: fastest within an accuracy loss, best under a latency cap.

When the study was verified (verified.csv), its figures win: the candidates are the verified
points on the verified front (seeds included), judged on what verification measured. Otherwise
the search's front (pareto.csv). An exported profile carries the figures it was chosen on, with
their intervals, and how its accuracy was measured (`metrics.measurement`: `eval --profile` then
measures the same way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from sparseinfer_dse.engine.methods import get_method
from sparseinfer_dse.engine.profile import FORMAT, VERSION, Profile
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.trial_profile import level_column_names

FIGURES = ("latency_ms", "latency_ci_low_ms", "latency_ci_high_ms", "latency_ratio", "accuracy", "accuracy_low",
           "accuracy_high", "accuracy_delta", "accuracy_delta_ci_low", "accuracy_delta_ci_high", "vs_dense", "vs_seed")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return pd.DataFrame()


@dataclass(frozen=True)
class Candidates:
    """What a profile is chosen from: the verified front (`verified`) or the search's front, with the
    dense accuracy the figures are compared to."""

    rows: pd.DataFrame
    meta: dict
    verified: bool
    dense_accuracy: Optional[float]


def candidates(study_dir: Path) -> Candidates:
    if not (study_dir / "pareto.csv").is_file() or not (study_dir / "study.json").is_file():
        raise UserError(f"{study_dir} is not a search output folder (no pareto.csv / study.json)")
    meta = json.loads((study_dir / "study.json").read_text())
    verified = _read_csv(study_dir / "verified.csv")
    if not verified.empty and "on_front" in verified:
        rows = verified[(verified["kind"] != "dense") & verified["on_front"].astype(bool)]
        dense = verified[verified["kind"] == "dense"]
        if not rows.empty:
            return Candidates(rows, meta, True, float(dense.iloc[0]["accuracy"]) if not dense.empty else None)
    front = _read_csv(study_dir / "pareto.csv")
    if front.empty:
        raise UserError(f"{study_dir} has no Pareto front yet (no finished trial)")
    dense = meta.get("dense") or {}
    key = "accuracy_full" if meta.get("fidelity") in ("full", "staged") else "score"
    return Candidates(front, meta, False, None if dense.get(key) is None else float(dense[key]))


def choose(study_dir: Path, max_accuracy_drop: Optional[float] = None, max_latency: Optional[float] = None,
           cands: Optional[Candidates] = None) -> pd.Series:
    """The fastest front profile within the accuracy drop (in the study's accuracy units), or the most
    accurate one under the latency cap; both constraints may be combined."""
    cands = cands or candidates(study_dir)
    front = cands.rows
    ok = front
    if max_accuracy_drop is not None:
        if cands.dense_accuracy is None:
            raise UserError("the study has no dense accuracy recorded, so --max-accuracy-drop cannot be applied")
        ok = ok[ok["accuracy"] >= cands.dense_accuracy - max_accuracy_drop]
    if max_latency is not None:
        ok = ok[ok["latency_ms"] <= max_latency]
    if ok.empty:
        best = front.sort_values("accuracy", ascending=False).iloc[0]
        raise UserError(
            f"no Pareto profile meets the constraint; the most accurate is {_label(best)} at {best['accuracy']:.4g} "
            f"({best['latency_ms']:.3g} ms/token)"
        )
    if max_latency is not None and max_accuracy_drop is None:
        return ok.sort_values(["accuracy", "latency_ms"], ascending=[False, True]).iloc[0]
    return ok.sort_values(["latency_ms", "accuracy"], ascending=[True, False]).iloc[0]


def _label(row: pd.Series) -> str:
    name = row.get("name")
    return str(name) if isinstance(name, str) and name else f"trial {int(row['trial'])}"


def profile_path(study_dir: Path, trial: int) -> Path:
    p = study_dir / "profiles" / f"trial-{trial:04d}.json"
    if not p.is_file():
        raise UserError(f"{p} is missing; rerun `sparseinfer-dse report --study {study_dir}` to rewrite it")
    return p


def _figures(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in FIGURES:
        v = row.get(key)
        if v is None or (isinstance(v, float) and v != v) or v == "":
            continue
        out[key] = v if isinstance(v, str) else float(v)
    return out


def profile_for(study_dir: Path, row: pd.Series, meta: dict, verified: bool) -> Profile:
    """The row's profile with the figures it was chosen on (verified ones under `verified`)."""
    cols = level_column_names(row.index)
    levels = [float(row[c]) if pd.notna(row[c]) else None for c in cols]
    trial = row.get("trial")
    has_trial = trial is not None and pd.notna(trial)
    stored = row.get("profile")
    if isinstance(stored, str) and stored.startswith("{"):  # verified.csv holds each profile whole
        base = Profile.from_dict(json.loads(stored), "verified.csv")
    elif has_trial and (study_dir / "profiles" / f"trial-{int(trial):04d}.json").is_file():
        base = Profile.load(profile_path(study_dir, int(trial)))
    else:
        ident = meta.get("identity") or {}
        model = {k: ident[k] for k in ("name", "config_hash", "num_layers")} if ident else None
        method = meta.get("method") or "sparseinfer"
        base = Profile.from_dict({"format": FORMAT, "version": VERSION, "name": _label(row), "model": model,
                                  "layers": [{"method": method, get_method(method).knob: a} for a in levels]})
    metrics = dict(base.metrics)
    if has_trial:
        metrics["trial"] = int(trial)
    if meta.get("measurement"):
        metrics["measurement"] = meta["measurement"]
    if verified:
        metrics["verified"] = {**_figures(row), "repeats": _int(row.get("verify_repeats")),
                               "limit": _int(row.get("verify_limit"))}
    else:
        metrics.update(_figures(row))
    return replace(base, name=base.name or _label(row), metrics=metrics)


def _int(v: Any) -> Optional[int]:
    return None if v is None or (isinstance(v, float) and v != v) else int(v)


def export_one(study_dir: Path, out: Path, **constraints: Optional[float]) -> tuple[Path, pd.Series]:
    cands = candidates(study_dir)
    row = choose(study_dir, cands=cands, **constraints)
    profile_for(study_dir, row, cands.meta, cands.verified).save(out)
    return out, row


def export_front(study_dir: Path, out_dir: Path) -> list[Path]:
    cands = candidates(study_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for _, row in cands.rows.iterrows():
        name = f"trial-{int(row['trial']):04d}.json" if pd.notna(row.get("trial")) else f"{_label(row)}.json"
        paths.append(profile_for(study_dir, row, cands.meta, cands.verified).save(out_dir / name))
    return paths
