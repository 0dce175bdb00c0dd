"""pareto.html: the Pareto plot in plotly (as `optuna.visualization.plot_pareto_front` draws it), where
hovering a point tells its trial, latency and accuracy with their intervals, its alphas, its seed and
the search's verdicts. It works offline: plotly.min.js is written once beside it, not fetched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from sparseinfer_dse.atomic import replaced, write_text
from sparseinfer_dse.search.report_data import (ReportData, accuracy_interval, accuracy_spec, accuracy_values,
                                                alpha_columns, alphas_text, dense_point, fmt_interval, level_name,
                                                latency_interval, latency_interval_kind, text, judged_accuracy)
from sparseinfer_dse.search.report_plots import search_point

ALPHAS_PER_LINE = 8


def _error(values: pd.Series, low: pd.Series, high: pd.Series) -> dict[str, Any]:
    v, lo, hi = (np.asarray(s, float) for s in (values, low, high))
    plus, minus = np.clip(hi - v, 0, None), np.clip(v - lo, 0, None)
    return {"type": "data", "symmetric": False, "array": np.nan_to_num(plus).tolist(),
            "arrayminus": np.nan_to_num(minus).tolist(),
            "visible": not (np.isnan(plus).all() and np.isnan(minus).all()),
            "thickness": 1, "width": 2}


def hover_texts(df: pd.DataFrame, data: ReportData, acc: pd.Series, acc_low: pd.Series,
                acc_high: pd.Series) -> list[str]:
    """One hover box per row: trial (and seed), latency and accuracy with intervals, alphas, verdicts."""
    cols = alpha_columns(df)
    lat_lo, lat_hi = latency_interval(df)
    spec = accuracy_spec(data.col)
    out = []
    for i, (idx, row) in enumerate(df.iterrows()):
        name = text(row.get("name"))
        trial = row.get("trial")
        head = name or (f"trial {int(trial)}" if pd.notna(trial) else "")
        if name and pd.notna(trial) and name != f"trial-{int(trial)}":
            head += f" (trial {int(trial)})"
        seed = text(row.get("seed"))
        lines = [f"<b>{head}</b>" + (f"  seed {seed}" if seed and seed != name else "")]
        lines.append(f"latency {fmt_interval(row.get('latency_ms'), lat_lo[idx], lat_hi[idx], '.3f')} ms")
        ratio = row.get("latency_ratio")
        if ratio is not None and pd.notna(ratio):
            lines[-1] += f" (x{float(ratio):.3f} of dense)"
        lines.append(f"accuracy {fmt_interval(acc.iloc[i], acc_low.iloc[i], acc_high.iloc[i], spec)}")
        if "accuracy_delta" in df and pd.notna(row.get("accuracy_delta")):
            lines.append("accuracy vs dense " + fmt_interval(row["accuracy_delta"], row.get("accuracy_delta_ci_low"),
                                                    row.get("accuracy_delta_ci_high"), "+.1f") + " points")
        if cols:
            lines.append(f"{level_name(cols)} " + alphas_text(row, cols, ALPHAS_PER_LINE))
        vs_dense, vs_seed = (text(row.get("vs_dense")), text(row.get("vs_seed")))
        if "vs_dense" not in df and "vs_seed" not in df and pd.notna(trial):  # trials.csv rows: the front's verdicts
            vs_dense, vs_seed = data.verdicts(trial)
        s_ms, s_acc = row.get("search_latency_ms"), row.get("search_accuracy")
        if s_ms is not None and s_acc is not None and pd.notna(s_ms) and pd.notna(s_acc):
            lines.append(f"at search: {float(s_ms):.3f} ms, accuracy {format(float(s_acc), spec)}")
        lines += [f"{k}: {v}" for k, v in (("vs dense", vs_dense), ("vs seed", vs_seed)) if v]
        out.append("<br>".join(lines))
    return out


def _scatter(go, df: pd.DataFrame, data: ReportData, name: str, marker: dict[str, Any], verified: bool = False,
             **kw) -> Any:
    if verified:
        acc, lo, hi = judged_accuracy(df, data.col)
    else:
        acc = accuracy_values(df, data.col)
        lo, hi = accuracy_interval(df, data.col)
    lat_lo, lat_hi = latency_interval(df)
    return go.Scatter(x=df["latency_ms"].astype(float).tolist(), y=acc.astype(float).tolist(), name=name,
                      marker=marker, error_x=_error(df["latency_ms"], lat_lo, lat_hi), error_y=_error(acc, lo, hi),
                      hovertext=hover_texts(df, data, acc, lo, hi), hoverinfo="text", **kw)


def pareto_figure(data: ReportData) -> Any:
    """The plotly figure: dominated trials, the front (step line), seeds, dense, verified profiles."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(data.dominated):
        fig.add_trace(_scatter(go, data.dominated, data, "dominated trials", {"color": "#1f77b4", "size": 7},
                               mode="markers", opacity=0.4))
    if len(data.front):
        fig.add_trace(_scatter(go, data.front, data, "Pareto front", {"color": "#d62728", "size": 9},
                               mode="lines+markers", line={"shape": "hv", "color": "rgba(214,39,40,0.6)"}))
    if len(data.seeds):
        fig.add_trace(_scatter(go, data.seeds, data, "seeds", {"symbol": "diamond-open", "color": "black", "size": 12},
                               mode="markers+text", text=[text(s) for s in data.seeds["seed"]],
                               textposition="bottom right"))
    dense = dense_point(data.meta, data.col)
    if dense:
        fig.add_trace(_dense_trace(go, dense, data))
    if data.verified is not None:
        v = data.verified
        fig.add_trace(_scatter(go, v, data, "verified", {"symbol": "square", "color": "#2ca02c", "size": 9},
                               verified=True, mode="markers"))
        y, _, _ = judged_accuracy(v, data.col)
        for (_, row), acc in zip(v.iterrows(), y):
            start = search_point(data, row)
            if start is not None and pd.notna(row["latency_ms"]) and pd.notna(acc):
                fig.add_annotation(x=float(row["latency_ms"]), y=float(acc), ax=start[0], ay=start[1], xref="x",
                                   yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2, arrowwidth=1,
                                   arrowcolor="rgba(44,160,44,0.7)", text="")
    fig.update_layout(
        title=f"{data.meta.get('model', '')}: latency vs accuracy ({data.meta.get('device', '')})",
        xaxis_title=f"decode latency (ms/token, batch 1; bars: {latency_interval_kind(data.done)})",
        yaxis_title=str(data.meta.get("accuracy_label", data.col)), template="plotly_white",
        hoverlabel={"font": {"family": "monospace", "size": 12}}, legend={"orientation": "h", "y": -0.2})
    return fig


def _dense_trace(go, dense: dict[str, float], data: ReportData) -> Any:
    spec = accuracy_spec(data.col)
    hover = (f"<b>dense</b><br>latency {fmt_interval(dense['ms'], dense['ms_low'], dense['ms_high'], '.3f')} ms<br>"
             f"accuracy {fmt_interval(dense['acc'], dense['acc_low'], dense['acc_high'], spec)}")
    one = lambda k: pd.Series([dense[k]])  # noqa: E731
    return go.Scatter(x=[dense["ms"]], y=[dense["acc"]], name="dense", mode="markers",
                      marker={"symbol": "star", "color": "black", "size": 16},
                      error_x=_error(one("ms"), one("ms_low"), one("ms_high")),
                      error_y=_error(one("acc"), one("acc_low"), one("acc_high")), hovertext=[hover], hoverinfo="text")


def write_plotlyjs(folder: Path) -> Optional[Path]:
    """plotly.min.js beside the page, written when missing or from another plotly version."""
    import plotly.offline

    path = folder / "plotly.min.js"
    js = plotly.offline.get_plotlyjs()
    if path.is_file() and path.stat().st_size == len(js.encode()):
        return path
    with replaced(path) as tmp:
        tmp.write_text(js, encoding="utf-8")
    return path


def write_pareto_html(data: ReportData, path: Path) -> Path:
    """pareto.html (and plotly.min.js beside it): no network needed to open it."""
    page = pareto_figure(data).to_html(include_plotlyjs="directory", full_html=True)
    write_plotlyjs(path.parent)
    return write_text(path, page)
