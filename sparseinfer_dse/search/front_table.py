"""The front (or the verified points) as a text table a person reads: every figure with its 95%
interval and the verdicts against dense and the paper's seed."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sparseinfer_dse.search.report_data import fmt_interval


def with_interval(v: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    """'2.91 [2.85, 2.98]', or the bare figure when no interval was recorded, '-' without a figure."""
    return fmt_interval(v, lo, hi, f".{digits}g") or "-"


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def format_points(df: pd.DataFrame) -> str:
    """One line per point of pareto.csv or verified.csv (fastest first)."""
    if df.empty:
        return "(no point yet)"
    lines = []
    for _, r in df.sort_values("latency_ms").iterrows():
        name = _text(r.get("name")) or f"trial {int(r['trial'])}"
        seed = _text(r.get("seed"))
        if seed and seed not in name:
            name += f" ({seed})"
        lat = with_interval(r["latency_ms"], r.get("latency_ci_low_ms"), r.get("latency_ci_high_ms"))
        acc = with_interval(r["accuracy"], r.get("accuracy_low"), r.get("accuracy_high"))
        front = "" if "on_front" not in r or bool(r["on_front"]) else "  [dominated]"
        lines.append([name, lat, acc, _text(r.get("vs_dense")), _text(r.get("vs_seed")) + front])
    header = ["profile", "ms/token [95% CI]", "accuracy [95% CI]", "vs dense", "vs seed"]
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*l).rstrip() for l in lines])
