"""The report's HTML tables: the study's facts in words (not a JSON dump), the front with each figure's
95% interval ("2.91 [2.85, 2.98]") and the search's verdicts, and verified.csv's re-measurements
side by side with what the search had measured."""

from __future__ import annotations

import html
from typing import Any, Callable, Optional, Sequence

import pandas as pd

from sparseinfer_dse.search.report_data import (ReportData, accuracy_spec, alpha_columns, alphas_text, dense_point, level_name,
                                                fmt_interval, judged_accuracy, latency_interval,
                                                latency_interval_kind, text)

LATENCY_SPEC = ".2f"


def readable(value: Any) -> str:
    """A metadata value as plain text: dicts as "k: v, k: v" (nested in parentheses), lists comma-joined."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_inner(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, ".4g")
    return "" if value is None else str(value)


def _inner(value: Any) -> str:
    return f"({readable(value)})" if isinstance(value, dict) and value else readable(value)


def _cell(value: Any) -> str:
    """A top-level dict gets one "k: v" line per key; anything else one escaped line."""
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {html.escape(_inner(v))}" for k, v in value.items())
    return html.escape(readable(value))


def _duration(seconds: Any) -> str:
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    h, rest = divmod(int(round(s)), 3600)
    m, sec = divmod(rest, 60)
    return f"{s:.0f} s ({f'{h} h ' if h else ''}{m} min {sec} s)"


def _dense_rows(meta: dict[str, Any], col: str) -> list[tuple[str, str]]:
    dense = meta.get("dense") or {}
    rows: list[tuple[str, str]] = []
    if dense.get("ms") is not None:
        lat = fmt_interval(dense["ms"], dense.get("ci_low_ms"), dense.get("ci_high_ms"), ".3f") + " ms/token"
        if dense.get("p10_ms") is not None and dense.get("p90_ms") is not None:
            lat += f" (p10-p90 {dense['p10_ms']:.3f}-{dense['p90_ms']:.3f})"
        rows.append(("dense latency", html.escape(lat)))
    if dense.get("accuracy_full") is not None:
        rows.append(("dense accuracy", html.escape(fmt_interval(
            dense["accuracy_full"], dense.get("accuracy_ci_low"), dense.get("accuracy_ci_high"), ".1f"))))
    if dense.get("score") is not None and col != "accuracy_full":
        rows.append(("dense proxy score", html.escape(readable(float(dense["score"])))))
    shown = {"ms", "ci_low_ms", "ci_high_ms", "p10_ms", "p90_ms", "accuracy_full", "accuracy_ci_low",
             "accuracy_ci_high"}
    other = {k: v for k, v in dense.items() if k not in shown}
    if other:
        rows.append(("dense, other figures", _cell(other)))
    return rows


# study.json key -> row label, in the order a reader wants them; any key not named here follows, as is.
_LABELS = [("model", "model"), ("identity", "model identity"), ("device", "device"), ("backend", "backend"),
           ("dtype", "dtype"), ("decode_activation", "decode activation"), ("fidelity", "fidelity"),
           ("accuracy_label", "accuracy label"), ("dense", None), ("space", "search space"), ("sampler", "sampler"),
           ("budget", "budget"), ("trials", "trials per state"), ("front_size", "front size"),
           ("study_name", "study name"), ("storage", "storage"), ("worker", "worker"), ("versions", "versions"),
           ("wall_s_last_run", "wall time (last run)"), ("command", "command")]


def study_table(meta: dict[str, Any], col: str) -> str:
    rows: list[tuple[str, str]] = []
    named = {k for k, _ in _LABELS}
    for key, label in _LABELS + [(k, k.replace("_", " ")) for k in meta if k not in named]:
        value = meta.get(key)
        if key == "dense":
            rows += _dense_rows(meta, col)
        elif value is None or value == {} or value == "":
            continue
        elif key == "wall_s_last_run":
            rows.append((label, _duration(value)))
        elif key == "command":
            rows.append((label, f"<code>{html.escape(str(value))}</code>"))
        else:
            rows.append((label, _cell(value)))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="study">{body}</table>'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    """A table of already-formatted text cells (escaped here)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _trial(value: Any) -> str:
    return str(int(value)) if value is not None and pd.notna(value) else ""


def front_table(data: ReportData) -> str:
    """pareto.csv's rows, fastest first; a column shows only when the folder has its figures."""
    fr = data.front
    if fr.empty:
        return "<p>no front yet</p>"
    spec = accuracy_spec(data.col)
    lat_lo, lat_hi = latency_interval(fr)
    acc, acc_lo, acc_hi = judged_accuracy(fr, data.col)
    alphas = alpha_columns(fr)
    columns: list[tuple[str, bool, Callable[[int, Any, pd.Series], str]]] = [
        ("trial", True, lambda i, ix, r: _trial(r.get("trial"))),
        ("seed", "seed" in fr, lambda i, ix, r: text(r.get("seed"))),
        (f"latency ms [{latency_interval_kind(fr)}]", True,
         lambda i, ix, r: fmt_interval(r["latency_ms"], lat_lo[ix], lat_hi[ix], LATENCY_SPEC)),
        ("x dense", "latency_ratio" in fr, lambda i, ix, r: fmt_interval(r["latency_ratio"], None, None, ".3f")),
        ("accuracy [95% interval]", True,
         lambda i, ix, r: fmt_interval(acc.iloc[i], acc_lo.iloc[i], acc_hi.iloc[i], spec)),
        ("vs dense, points [95% interval]", "accuracy_delta" in fr,
         lambda i, ix, r: fmt_interval(r["accuracy_delta"], r.get("accuracy_delta_ci_low"),
                                       r.get("accuracy_delta_ci_high"), "+.1f")),
        ("proxy score [95% interval]", "proxy_score" in fr and data.col != "objective_accuracy",
         lambda i, ix, r: fmt_interval(r["proxy_score"], r.get("proxy_ci_low"), r.get("proxy_ci_high"), ".4g")),
        ("vs dense", "vs_dense" in fr, lambda i, ix, r: text(r.get("vs_dense"))),
        ("vs seed", "vs_seed" in fr, lambda i, ix, r: text(r.get("vs_seed"))),
        (f"{level_name(alphas)} by layer", bool(alphas), lambda i, ix, r: alphas_text(r, alphas)),
    ]
    shown = [(h, cell) for h, on, cell in columns if on]
    rows = [[cell(i, ix, r) for _, cell in shown] for i, (ix, r) in enumerate(fr.iterrows())]
    return html_table([h for h, _ in shown], rows, "front")


def _search_row(data: ReportData, trial: Any) -> Optional[pd.DataFrame]:
    """The search's own row for a verified profile (pareto.csv first, then trials.csv), for its intervals."""
    if trial is None or pd.isna(trial):
        return None
    for df in (data.front, data.done):
        if "trial" in df:
            hit = df[df["trial"] == trial]
            if len(hit):
                return hit.iloc[:1]
    return None


def verified_table(data: ReportData) -> str:
    """What the search measured next to what `verify` measured again, profile by profile."""
    v = data.verified
    if v is None:
        return ""
    spec = accuracy_spec(data.col)
    lat_lo, lat_hi = latency_interval(v)
    acc, acc_lo, acc_hi = judged_accuracy(v, data.col)
    headers = ["profile", "kind", "latency ms at search", "latency ms verified", "accuracy at search",
               "accuracy verified", "vs dense", "vs seed"]
    rows = []
    for i, (idx, r) in enumerate(v.iterrows()):
        s_lat, s_acc = r.get("search_latency_ms"), r.get("search_accuracy")
        s_lat_lo = s_lat_hi = s_acc_lo = s_acc_hi = None
        # an `also` row's trial may belong to another study: only its own search_* figures count
        found = _search_row(data, r.get("trial")) if text(r.get("kind")) not in ("dense", "also") else None
        dense = dense_point(data.meta, data.col) if text(r.get("kind")) == "dense" else None
        if dense:  # what the search measured for dense: study.json
            s_lat, s_lat_lo, s_lat_hi = dense["ms"], dense["ms_low"], dense["ms_high"]
            s_acc, s_acc_lo, s_acc_hi = dense["acc"], dense["acc_low"], dense["acc_high"]
        elif found is not None:
            lo, hi = latency_interval(found)
            a, alo, ahi = judged_accuracy(found, data.col)
            s_lat = s_lat if s_lat is not None and pd.notna(s_lat) else found["latency_ms"].iloc[0]
            s_acc = s_acc if s_acc is not None and pd.notna(s_acc) else a.iloc[0]
            s_lat_lo, s_lat_hi, s_acc_lo, s_acc_hi = lo.iloc[0], hi.iloc[0], alo.iloc[0], ahi.iloc[0]
        rows.append([text(r.get("name")) or f"trial-{_trial(r.get('trial'))}", text(r.get("kind")),
                     fmt_interval(s_lat, s_lat_lo, s_lat_hi, LATENCY_SPEC),
                     fmt_interval(r.get("latency_ms"), lat_lo[idx], lat_hi[idx], LATENCY_SPEC),
                     fmt_interval(s_acc, s_acc_lo, s_acc_hi, spec),
                     fmt_interval(acc.iloc[i], acc_lo.iloc[i], acc_hi.iloc[i], spec),
                     text(r.get("vs_dense")), text(r.get("vs_seed"))])
    return html_table(headers, rows, "verified")


def summary_line(data: ReportData) -> str:
    """One sentence: how many trials, the front's size, dense's figures."""
    dense = dense_point(data.meta, data.col)
    spec = accuracy_spec(data.col)
    parts = [f"{len(data.done)} completed trials", f"a front of {len(data.front)} profiles"]
    if dense:
        parts.append(f"dense {fmt_interval(dense['ms'], dense['ms_low'], dense['ms_high'], '.3f')} ms/token, "
                     f"accuracy {fmt_interval(dense['acc'], dense['acc_low'], dense['acc_high'], spec)}")
    return html.escape("; ".join(parts)) + "."
