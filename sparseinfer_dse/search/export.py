"""Pick profiles from a finished study: fastest within an accuracy loss, best under a latency cap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import pandas as pd

from sparseinfer_dse.errors import UserError


def _front(study_dir: Path) -> tuple[pd.DataFrame, dict]:
    if not (study_dir / "pareto.csv").is_file() or not (study_dir / "study.json").is_file():
        raise UserError(f"{study_dir} is not a search output folder (no pareto.csv / study.json)")
    meta = json.loads((study_dir / "study.json").read_text())
    try:
        front = pd.read_csv(study_dir / "pareto.csv")
    except pd.errors.EmptyDataError:
        front = pd.DataFrame()
    if front.empty:
        raise UserError(f"{study_dir} has no Pareto front yet (no finished trial)")
    return front, meta


def dense_accuracy(meta: dict) -> float:
    dense = meta.get("dense") or {}
    key = "accuracy_full" if meta.get("fidelity") in ("full", "staged") else "score"
    if dense.get(key) is None:
        raise UserError("the study has no dense accuracy recorded, so --max-accuracy-drop cannot be applied")
    return float(dense[key])


def choose(study_dir: Path, max_accuracy_drop: Optional[float] = None, max_latency: Optional[float] = None) -> pd.Series:
    """The fastest front profile within the accuracy drop (in the study's accuracy units), or the most
    accurate one under the latency cap; both constraints may be combined."""
    front, meta = _front(study_dir)
    ok = front
    if max_accuracy_drop is not None:
        floor = dense_accuracy(meta) - max_accuracy_drop
        ok = ok[ok["accuracy"] >= floor]
    if max_latency is not None:
        ok = ok[ok["latency_ms"] <= max_latency]
    if ok.empty:
        best = front.sort_values("accuracy", ascending=False).iloc[0]
        raise UserError(
            "no Pareto profile meets the constraint; the most accurate is trial "
            f"{int(best['trial'])} at {best['accuracy']:.4g} ({best['latency_ms']:.3g} ms/token)"
        )
    if max_latency is not None and max_accuracy_drop is None:
        return ok.sort_values(["accuracy", "latency_ms"], ascending=[False, True]).iloc[0]
    return ok.sort_values(["latency_ms", "accuracy"], ascending=[True, False]).iloc[0]


def profile_path(study_dir: Path, trial: int) -> Path:
    p = study_dir / "profiles" / f"trial-{trial:04d}.json"
    if not p.is_file():
        raise UserError(f"{p} is missing; rerun `sparseinfer-dse report --study {study_dir}` to rewrite it")
    return p


def export_one(study_dir: Path, out: Path, **constraints: Optional[float]) -> tuple[Path, pd.Series]:
    row = choose(study_dir, **constraints)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(profile_path(study_dir, int(row["trial"])), out)
    return out, row


def export_front(study_dir: Path, out_dir: Path) -> list[Path]:
    front, _ = _front(study_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in front["trial"]:
        src = profile_path(study_dir, int(t))
        paths.append(Path(shutil.copyfile(src, out_dir / src.name)))
    return paths
