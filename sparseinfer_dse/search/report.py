"""The study report: report.html with its PNGs and the interactive pareto.html beside it, drawn from a
search's output folder. Everything it needs lies in that folder, so it opens offline."""

from __future__ import annotations

import html
from pathlib import Path

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.report_data import ReportData, alpha_columns, level_name, load
from sparseinfer_dse.search.report_interactive import write_pareto_html
from sparseinfer_dse.search.report_plots import (alpha_heatmap_figure, hypervolume_figure, pareto_figure, save,
                                                 sparsity_figure)
from sparseinfer_dse.search.report_tables import front_table, study_table, summary_line, verified_table

_STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}img{max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;
vertical-align:top}thead th{background:#f3f3f3}table.front td,table.verified td{white-space:nowrap}
table.study th{background:#f7f7f7;white-space:nowrap}.note{color:#555;font-size:13px}"""


def _page(data: ReportData) -> str:
    model = html.escape(str(data.meta.get("model", "")))
    verified = ""
    if data.verified is not None:
        verified = (f"<h2>Verified ({len(data.verified)} profiles re-measured by <code>verify</code>)</h2>"
                    "<p class=note>What the search measured for each profile next to the new measurement "
                    "(green squares on the plot; the dashed arrow runs from the search's point to it).</p>"
                    + verified_table(data))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>sparseinfer-dse report: {model}</title>
<style>{_STYLE}</style></head>
<body><h1>sparseinfer-dse study: {model}</h1>
<p>{summary_line(data)}</p>
<p class=note>Figures in brackets are intervals [low, high]: 95% confidence intervals (in folders written before
the search measured them, latency +- its measured noise); a figure without brackets was measured without one.</p>
<h2>Pareto front: latency vs accuracy</h2>
<p><a href="pareto.html">Interactive version (pareto.html)</a>: hover a point for its trial, intervals,
per-layer levels and verdicts.</p>
<img src="pareto.png" alt="Pareto plot">
<h2>Front ({len(data.front)} profiles, fastest first; exported under <code>profiles/</code>)</h2>{front_table(data)}
{verified}
<h2>{level_name(alpha_columns(data.front)).capitalize()} per layer on the front</h2><img src="alphas.png" alt="per-layer levels">
<h2>Per-layer sparsity of the front</h2><img src="sparsity.png" alt="sparsity per layer">
<h2>Hypervolume over trials</h2><img src="hypervolume.png" alt="hypervolume">
<h2>Study</h2>{study_table(data.meta, data.col)}
</body></html>
"""


def write_report(out: Path) -> Path:
    """Draw the PNGs, pareto.html (+ plotly.min.js) and report.html from `out`'s files; returns report.html."""
    if not (out / "trials.csv").is_file():
        raise UserError(f"{out} is not a search output folder (no trials.csv)")
    data = load(out)
    save(pareto_figure(data), out / "pareto.png")
    save(alpha_heatmap_figure(data.front), out / "alphas.png")
    save(sparsity_figure(data.front), out / "sparsity.png")
    save(hypervolume_figure(data.done, data.col, data.dense.get("ms")), out / "hypervolume.png")
    write_pareto_html(data, out / "pareto.html")
    return write_text(out / "report.html", _page(data))
