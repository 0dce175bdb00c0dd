"""What the report draws, read once from a search folder: trials, the front (as the search judged it),
the optional verified re-measurements, the study's metadata, and the intervals around each figure.

The front is taken from pareto.csv, never recomputed: the search decides it with paired statistics
that the CSVs cannot reproduce. Every interval column is optional (older folders lack them); a
missing interval is NaN and is drawn as no bar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from sparseinfer_dse.search.outputs import accuracy_column
from sparseinfer_dse.search.trial_profile import level_column_names

# The interval columns of each accuracy figure (pareto.csv's `accuracy` has its own, whichever metric it is).
ACCURACY_INTERVALS = {
    "accuracy_full": ("accuracy_ci_low", "accuracy_ci_high"),
    "objective_accuracy": ("proxy_ci_low", "proxy_ci_high"),
    "proxy_score": ("proxy_ci_low", "proxy_ci_high"),
    "accuracy": ("accuracy_low", "accuracy_high"),
    "accuracy_delta": ("accuracy_delta_ci_low", "accuracy_delta_ci_high"),
}


@dataclass
class ReportData:
    """One search folder, ready to draw. `col` is the accuracy column the plots use."""

    done: pd.DataFrame  # completed trials with an accuracy figure
    front: pd.DataFrame  # pareto.csv's rows, fastest first
    verified: Optional[pd.DataFrame]  # verified.csv, when a `verify` run wrote one
    meta: dict[str, Any]
    col: str
    trials: pd.DataFrame

    @property
    def front_trials(self) -> set[int]:
        return set(int(t) for t in self.front["trial"].dropna()) if "trial" in self.front else set()

    @property
    def dominated(self) -> pd.DataFrame:
        return self.done[~self.done["trial"].isin(self.front_trials)] if len(self.done) else self.done

    @property
    def seeds(self) -> pd.DataFrame:
        return seed_rows(self.done)

    @property
    def dense(self) -> dict[str, Any]:
        return self.meta.get("dense") or {}

    def verdicts(self, trial: Any) -> tuple[str, str]:
        """(vs_dense, vs_seed) of a front trial, empty strings for any other."""
        rows = self.front[self.front["trial"] == trial] if "trial" in self.front else self.front.iloc[0:0]
        if rows.empty:
            return "", ""
        row = rows.iloc[0]
        return text(row.get("vs_dense")), text(row.get("vs_seed"))


def _csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return pd.DataFrame()


def load(out: Path) -> ReportData:
    """Read trials.csv, pareto.csv, study.json and (when present) verified.csv from `out`."""
    trials = _csv(out / "trials.csv")
    meta = json.loads((out / "study.json").read_text())
    done = trials[trials["state"] == "COMPLETE"] if "state" in trials else trials.iloc[0:0]
    col = accuracy_column(done, meta.get("fidelity", "proxy"))
    done = done[done[col].notna()] if col in done else done.iloc[0:0]
    front = _csv(out / "pareto.csv")
    if len(front):
        front = front.sort_values("latency_ms")
    verified = _csv(out / "verified.csv") if (out / "verified.csv").is_file() else None
    return ReportData(done, front, verified if verified is not None and len(verified) else None, meta, col, trials)


def text(value: Any) -> str:
    """A CSV cell as text: NaN and None are empty."""
    if value is None or (np.isscalar(value) and pd.isna(value)) or value is pd.NA:
        return ""
    return str(value).strip()


def seed_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "seed" not in df or df.empty:
        return df.iloc[0:0]
    return df[df["seed"].map(text) != ""]


def _num(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)


def accuracy_values(df: pd.DataFrame, col: str) -> pd.Series:
    """`col`, filled from pareto.csv's `accuracy` where `col` is missing."""
    return _num(df, col).fillna(_num(df, "accuracy"))


def judged_accuracy(df: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(value, low, high) of the figure the front was judged on (pareto.csv's and verified.csv's
    `accuracy` with `accuracy_low/high`), else of `col`."""
    lo, hi = accuracy_interval(df, col)
    return (_num(df, "accuracy").fillna(_num(df, col)), _num(df, "accuracy_low").fillna(lo),
            _num(df, "accuracy_high").fillna(hi))


def latency_interval(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(low, high) of each row's latency: the 95% interval, else latency_ms +- latency_noise_ms, else NaN."""
    ms, noise = _num(df, "latency_ms"), _num(df, "latency_noise_ms")
    return _num(df, "latency_ci_low_ms").fillna(ms - noise), _num(df, "latency_ci_high_ms").fillna(ms + noise)


def latency_interval_kind(df: pd.DataFrame) -> str:
    """What the latency bars mean in this folder: a 95% interval, or (older folders) +- the measured noise."""
    if "latency_ci_low_ms" in df and "latency_ci_high_ms" in df:
        return "95% interval"
    return "+- measured noise" if "latency_noise_ms" in df else "no interval"


def accuracy_interval(df: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series]:
    """(low, high) of `col`, else pareto.csv's `accuracy_low/high`, else NaN."""
    lo, hi = ACCURACY_INTERVALS.get(col, ("", ""))
    low, high = _num(df, lo), _num(df, hi)
    if col != "accuracy":
        low, high = low.fillna(_num(df, "accuracy_low")), high.fillna(_num(df, "accuracy_high"))
    return low, high


def alpha_columns(df: pd.DataFrame) -> list[str]:
    """The per-layer level columns (alpha_NNN, sparsity_NNN)."""
    return level_column_names(df.columns)


def level_name(cols: list[str]) -> str:
    """What the level columns hold, for titles: "alpha", "sparsity" or "level"."""
    return cols[0].rsplit("_", 1)[0] if cols else "alpha"


def alphas_text(row: pd.Series, cols: list[str], per_line: int = 0) -> str:
    """Per-layer levels, compact ("0.97 1.00 1.03 ..."); `per_line` > 0 breaks lines with <br>."""
    vals = [f"{float(row[c]):.2f}" if pd.notna(row[c]) else "-" for c in cols]
    if per_line <= 0:
        return " ".join(vals)
    return "<br>".join(" ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line))


def dense_point(meta: dict[str, Any], col: str) -> Optional[dict[str, float]]:
    """Dense's (ms, accuracy) on the plotted axis, with its intervals when study.json has them (NaN if not)."""
    dense = meta.get("dense") or {}
    acc = dense.get("accuracy_full" if col == "accuracy_full" else "score")
    if dense.get("ms") is None or acc is None:
        return None
    nan = float("nan")

    def f(key: str) -> float:
        v = dense.get(key)
        return float(v) if v is not None else nan

    acc_lo, acc_hi = ACCURACY_INTERVALS["accuracy_full" if col == "accuracy_full" else "proxy_score"]
    return {"ms": float(dense["ms"]), "ms_low": f("ci_low_ms"), "ms_high": f("ci_high_ms"),
            "acc": float(acc), "acc_low": f(acc_lo), "acc_high": f(acc_hi)}


def fmt_interval(value: Any, low: Any, high: Any, spec: str) -> str:
    """"2.91 [2.85, 2.98]"; just the value when either bound is missing; empty without a value."""
    if value is None or pd.isna(value):
        return ""
    out = format(float(value), spec)
    if low is not None and high is not None and pd.notna(low) and pd.notna(high):
        out += f" [{format(float(low), spec)}, {format(float(high), spec)}]"
    return out


def accuracy_spec(col: str) -> str:
    """lm-eval points read well with one decimal; proxy scores (KL-like, near 0) need significant digits."""
    return ".1f" if col in ("accuracy_full", "accuracy_delta") else ".4g"
