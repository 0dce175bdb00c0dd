"""The report's PNGs (matplotlib): the Pareto plot with its intervals, alphas on the front, per-layer
sparsity, hypervolume. Each `*_figure` returns the figure so tests can read what it draws; `save`
writes it whole (atomic) and closes it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from sparseinfer_dse.atomic import replaced
from sparseinfer_dse.search.pareto import hypervolume_2d
from sparseinfer_dse.search.report_data import (ReportData, accuracy_interval, accuracy_values, alpha_columns, level_name,
                                                dense_point, judged_accuracy, latency_interval,
                                                latency_interval_kind, text)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    with replaced(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def layer_ticks(n: int) -> list[int]:
    """Whole layer numbers to label: every layer up to 16, then a round step giving at most 8 labels
    (every 4th of 32 layers), so no tick ever falls between two layers."""
    if n <= 16:
        return list(range(n))
    step = next((s for s in (2, 4, 5, 8, 10, 16, 20, 25, 50, 100) if math.ceil(n / s) <= 8), math.ceil(n / 8))
    return list(range(0, n, step))


def _errorbars(ax, x, y, low_x, high_x, low_y, high_y, **kw) -> None:
    """Asymmetric error bars; a missing bound draws no bar (and no call at all when every bound is missing)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    xerr = np.vstack([x - np.asarray(low_x, float), np.asarray(high_x, float) - x])
    yerr = np.vstack([y - np.asarray(low_y, float), np.asarray(high_y, float) - y])
    if len(x) == 0 or (np.isnan(xerr).all() and np.isnan(yerr).all()):
        return
    ax.errorbar(x, y, xerr=np.nan_to_num(np.clip(xerr, 0, None)), yerr=np.nan_to_num(np.clip(yerr, 0, None)),
                fmt="none", **kw)


def _bars(ax, df: pd.DataFrame, y: pd.Series, col: str, **kw) -> None:
    lo_x, hi_x = latency_interval(df)
    lo_y, hi_y = accuracy_interval(df, col)
    _errorbars(ax, df["latency_ms"], y, lo_x, hi_x, lo_y, hi_y, **kw)


def search_point(data: ReportData, row: pd.Series) -> Optional[tuple[float, float]]:
    """Where the search placed a verified profile: verified.csv's search_* figures, else its trial's row
    (dense: study.json's dense figures)."""
    ms, acc = row.get("search_latency_ms"), row.get("search_accuracy")
    if ms is not None and acc is not None and pd.notna(ms) and pd.notna(acc):
        return float(ms), float(acc)
    if text(row.get("kind")) == "dense":
        dense = dense_point(data.meta, data.col)
        return (dense["ms"], dense["acc"]) if dense else None
    trial = row.get("trial")
    if text(row.get("kind")) == "also":  # its trial may be another study's
        return None
    if pd.notna(trial) and "trial" in data.done:
        hit = data.done[data.done["trial"] == trial]
        if len(hit):
            return float(hit["latency_ms"].iloc[0]), float(accuracy_values(hit, data.col).iloc[0])
    return None


def pareto_figure(data: ReportData) -> Any:
    """Every completed trial (dominated ones faint), pareto.csv's front in red with a step line, 95%
    intervals as error bars, dense (star), seeds (diamonds) and verified profiles (green squares, an
    arrow from where the search put them)."""
    plt = _plt()
    col = data.col
    fig, ax = plt.subplots(figsize=(8, 5.5))
    dom = data.dominated
    if len(dom):
        y = accuracy_values(dom, col)
        _bars(ax, dom, y, col, ecolor="tab:blue", alpha=0.15, lw=0.6)
        ax.scatter(dom["latency_ms"], y, c="tab:blue", alpha=0.3, s=20, label="dominated trials")
    fr = data.front
    if len(fr):
        y = accuracy_values(fr, col)
        _bars(ax, fr, y, col, ecolor="tab:red", alpha=0.55, lw=0.9, capsize=2)
        ax.step(fr["latency_ms"], y, where="post", c="tab:red", alpha=0.6)
        ax.scatter(fr["latency_ms"], y, c="tab:red", s=32, label="Pareto front (pareto.csv)", zorder=3)
    seeds = data.seeds
    if len(seeds):
        y = accuracy_values(seeds, col)
        _bars(ax, seeds, y, col, ecolor="k", alpha=0.45, lw=0.8, capsize=2)
        ax.scatter(seeds["latency_ms"], y, marker="D", s=70, facecolors="none", edgecolors="k", zorder=4, label="seeds")
        for (_, row), acc in zip(seeds.iterrows(), y):
            ax.annotate(text(row["seed"]), (row["latency_ms"], acc), textcoords="offset points", xytext=(6, -10),
                        fontsize=8)
    dense = dense_point(data.meta, col)
    if dense:
        _errorbars(ax, [dense["ms"]], [dense["acc"]], [dense["ms_low"]], [dense["ms_high"]], [dense["acc_low"]],
                   [dense["acc_high"]], ecolor="k", lw=1, capsize=3)
        ax.scatter([dense["ms"]], [dense["acc"]], marker="*", s=180, c="k", zorder=4, label="dense")
    if data.verified is not None:
        _draw_verified(ax, data)
    ax.set_xlabel(f"decode latency (ms/token, batch 1; bars: {latency_interval_kind(data.done)})")
    ax.set_ylabel(data.meta.get("accuracy_label", col))
    ax.set_title(f"{data.meta.get('model', '')}: latency vs accuracy ({data.meta.get('device', '')})")
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize=8)
    return fig


def _draw_verified(ax, data: ReportData) -> None:
    v = data.verified
    y, lo_y, hi_y = judged_accuracy(v, data.col)
    lo_x, hi_x = latency_interval(v)
    _errorbars(ax, v["latency_ms"], y, lo_x, hi_x, lo_y, hi_y, ecolor="tab:green", alpha=0.7, lw=0.9, capsize=2)
    ax.scatter(v["latency_ms"], y, marker="s", s=40, c="tab:green", zorder=5, label="verified (verified.csv)")
    for (_, row), acc in zip(v.iterrows(), y):
        if pd.isna(row["latency_ms"]) or pd.isna(acc):
            continue
        ax.annotate(text(row.get("name")), (row["latency_ms"], acc), textcoords="offset points", xytext=(5, 5),
                    fontsize=7, color="tab:green")
        start = search_point(data, row)
        if start is not None:
            ax.annotate("", xy=(row["latency_ms"], acc), xytext=start,
                        arrowprops={"arrowstyle": "->", "color": "tab:green", "lw": 0.8, "alpha": 0.6, "ls": "--"})


def alpha_heatmap_figure(front: pd.DataFrame) -> Any:
    """The level (alpha, or target sparsity) per layer and front profile: whole layer numbers on x,
    trial numbers on y (fastest first); a dense layer shows as alpha 1 / sparsity 0."""
    plt = _plt()
    cols = alpha_columns(front)
    what = level_name(cols)
    fig, ax = plt.subplots(figsize=(max(6, min(len(cols), 64) * 0.3), max(2.5, len(front) * 0.35 + 1)))
    if cols and len(front):
        fill = 1.0 if what == "alpha" else 0.0
        im = ax.imshow(front[cols].astype(float).fillna(fill).values, aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, label=what)
        ticks = layer_ticks(len(cols))
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(i) for i in ticks])
        ax.set_xticks(range(len(cols)), minor=True)  # a mark per layer where the labels are thinned out
        ax.set_yticks(range(len(front)))
        labels = [f"#{int(t)}  {ms:.2f} ms" for t, ms in zip(front["trial"], front["latency_ms"])]
        ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("decoder layer")
    ax.set_title(f"{what} per layer on the Pareto front (fastest first)")
    return fig


def sparsity_figure(front: pd.DataFrame) -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    n = 0
    for _, row in front.iterrows():
        raw = row.get("latency_layer_sparsity")
        if isinstance(raw, str) and raw.strip():
            vals = json.loads(raw)
            n = max(n, len(vals))
            ax.plot(range(len(vals)), vals, marker="o", ms=3, label=f"#{int(row['trial'])}")
    if n:
        ax.set_xticks(layer_ticks(n))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("rows skipped per decode step")
    ax.set_ylim(0, 1)
    ax.set_title("per-layer sparsity of the Pareto profiles (predicted + actual)")
    ax.grid(alpha=0.3)
    if 0 < len(ax.lines) <= 12:
        ax.legend(fontsize=7)
    return fig


def hypervolume_curve(done: pd.DataFrame, col: str, dense_ms: Optional[float]) -> list[float]:
    d = done.sort_values("trial")
    ref_lat = (dense_ms or float(d["latency_ms"].max())) * 1.05
    ref_acc = float(d[col].min()) - 1e-9
    return [hypervolume_2d(d["latency_ms"][: i + 1], d[col][: i + 1], ref_lat, ref_acc) for i in range(len(d))]


def hypervolume_figure(done: pd.DataFrame, col: str, dense_ms: Optional[float]) -> Any:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5))
    trials: Sequence[int] = sorted(int(t) for t in done["trial"]) if len(done) else []
    ax.plot(trials, hypervolume_curve(done, col, dense_ms) if len(done) else [], marker=".")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_title("dominated hypervolume over trials")
    ax.grid(alpha=0.3)
    return fig
