"""The study report: PNG plots and an offline HTML page, drawn from a search's output folder."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from sparseinfer_dse.atomic import replaced, write_text
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.outputs import accuracy_column
from sparseinfer_dse.search.pareto import front_mask, hypervolume_2d


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _load(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    trials = pd.read_csv(out / "trials.csv")
    try:
        front = pd.read_csv(out / "pareto.csv")
    except pd.errors.EmptyDataError:
        front = pd.DataFrame()
    meta = json.loads((out / "study.json").read_text())
    return trials, front, meta


def _seed_rows(done: pd.DataFrame) -> pd.DataFrame:
    return done[done["seed"].notna()] if "seed" in done else done.iloc[0:0]


def plot_pareto(done: pd.DataFrame, col: str, meta: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    noise = done["latency_noise_ms"].fillna(0) if "latency_noise_ms" in done else [0.0] * len(done)
    mask = front_mask(done["latency_ms"], done[col], noise)  # empty when no trial finished yet
    dom, fr = done[~mask], done[mask].sort_values("latency_ms")
    ax.scatter(dom["latency_ms"], dom[col], c="tab:blue", alpha=0.25, s=20, label="dominated trials")
    ax.step(fr["latency_ms"], fr[col], where="post", c="tab:red", alpha=0.6)
    ax.scatter(fr["latency_ms"], fr[col], c="tab:red", s=32, label="Pareto front", zorder=3)
    for _, row in _seed_rows(done).iterrows():
        ax.scatter([row["latency_ms"]], [row[col]], marker="D", s=70, facecolors="none", edgecolors="k", zorder=4)
        ax.annotate(row["seed"], (row["latency_ms"], row[col]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    dense = meta.get("dense") or {}
    d_acc = dense.get("accuracy_full" if col == "accuracy_full" else "score")
    if dense.get("ms") is not None and d_acc is not None:
        ax.scatter([dense["ms"]], [d_acc], marker="*", s=180, c="k", zorder=4, label="dense")
    ax.set_xlabel("decode latency (ms/token, batch 1)")
    ax.set_ylabel(meta.get("accuracy_label", col))
    ax.set_title(f"{meta.get('model', '')}: latency vs accuracy ({meta.get('device', '')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with replaced(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def plot_alpha_heatmap(front: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    cols = sorted(c for c in front.columns if c.startswith("alpha_"))
    fig, ax = plt.subplots(figsize=(max(6, len(cols) * 0.3), max(2.5, len(front) * 0.35 + 1)))
    if cols and len(front):
        im = ax.imshow(front[cols].astype(float).fillna(1.0).values, aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, label="alpha")
        ax.set_yticks(range(len(front)))
        ax.set_yticklabels([f"#{int(t)} {ms:.2f} ms" for t, ms in zip(front["trial"], front["latency_ms"])], fontsize=7)
    ax.set_xlabel("decoder layer")
    ax.set_title("alpha per layer on the Pareto front (fastest first)")
    return _save(plt, fig, path)


def plot_sparsity(front: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, row in front.iterrows():
        raw = row.get("latency_layer_sparsity")
        if isinstance(raw, str):
            vals = json.loads(raw)
            ax.plot(range(len(vals)), vals, marker="o", ms=3, label=f"#{int(row['trial'])}")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("rows skipped per decode step")
    ax.set_ylim(0, 1)
    ax.set_title("per-layer sparsity of the Pareto profiles (predicted + actual)")
    ax.grid(alpha=0.3)
    if 0 < len(ax.lines) <= 12:
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def hypervolume_curve(done: pd.DataFrame, col: str, dense_ms: Optional[float]) -> list[float]:
    d = done.sort_values("trial")
    ref_lat = (dense_ms or float(d["latency_ms"].max())) * 1.05
    ref_acc = float(d[col].min()) - 1e-9
    return [hypervolume_2d(d["latency_ms"][: i + 1], d[col][: i + 1], ref_lat, ref_acc) for i in range(len(d))]


def plot_hypervolume(done: pd.DataFrame, col: str, dense_ms: Optional[float], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sorted(done["trial"]), hypervolume_curve(done, col, dense_ms), marker=".")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_title("dominated hypervolume over trials")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def write_report(out: Path) -> Path:
    """Draw the PNGs and report.html (images beside it, no network needed) from `out`'s files."""
    if not (out / "trials.csv").is_file():
        raise UserError(f"{out} is not a search output folder (no trials.csv)")
    trials, front, meta = _load(out)
    done = trials[trials["state"] == "COMPLETE"]
    col = accuracy_column(done, meta.get("fidelity", "proxy"))
    done = done[done[col].notna()] if col in done else done.iloc[0:0]
    plot_pareto(done, col, meta, out / "pareto.png")
    plot_alpha_heatmap(front, out / "alphas.png")
    plot_sparsity(front, out / "sparsity.png")
    plot_hypervolume(done, col, (meta.get("dense") or {}).get("ms"), out / "hypervolume.png")
    show = [c for c in ("trial", "latency_ms", "latency_ratio", "latency_noise_ms", "accuracy", "proxy_kl",
                        "proxy_top1", "accuracy_full", "seed") if c in front.columns]
    table = front[show].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="") if len(front) else "<p>no front yet</p>"
    facts = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
                    for k, v in meta.items() if k not in ("command",))
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>sparseinfer-dse report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}</style></head>
<body><h1>sparseinfer-dse study: {html.escape(str(meta.get('model', '')))}</h1>
<p>command: <code>{html.escape(str(meta.get('command', '')))}</code></p>
<h2>Pareto front: latency vs accuracy</h2><img src="pareto.png" alt="Pareto plot">
<h2>Front ({len(front)} profiles; exported under <code>profiles/</code>)</h2>{table}
<h2>Alpha per layer on the front</h2><img src="alphas.png" alt="alpha heatmap">
<h2>Per-layer sparsity of the front</h2><img src="sparsity.png" alt="sparsity per layer">
<h2>Hypervolume over trials</h2><img src="hypervolume.png" alt="hypervolume">
<h2>Study</h2><table>{facts}</table></body></html>"""
    path = out / "report.html"
    write_text(path, body)
    return path
