"""The report from hand-made search folders (no model, no optuna run): new folders with 95% intervals
and verified.csv, old folders with only latency noise, and folders with no finished trial."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from sparseinfer_dse.search.report import write_report
from sparseinfer_dse.search.report_data import load
from sparseinfer_dse.search.report_interactive import pareto_figure as interactive_figure
from sparseinfer_dse.search.report_plots import alpha_heatmap_figure, layer_ticks, pareto_figure
from sparseinfer_dse.search.report_tables import readable

ALPHAS = {0: [1.0] * 4, 1: [1.03, 1.03, 1.0, 1.0], 2: [0.97, 1.0, 1.03, 0.95], 3: [0.9] * 4, 4: [1.05, 0.99, 1.1, 1.02]}
LATENCY = {0: 3.0, 1: 3.4, 2: 2.91, 3: 2.5, 4: 3.2}
ACCURACY = {0: 74.0, 1: 75.0, 2: 74.0, 3: 60.0, 4: 77.0}
FRONT = [2, 4]


def _trials(ci: bool) -> pd.DataFrame:
    rows = []
    for t, alphas in ALPHAS.items():
        ms, acc = LATENCY[t], ACCURACY[t]
        row = {"trial": t, "state": "COMPLETE", "latency_ms": ms, "objective_accuracy": -0.001 * (5 - t),
               "latency_ratio": ms / 3.5, "accuracy_full": acc, "proxy_score": -0.001 * (5 - t),
               "seed": {0: "uniform-1.00", 1: "paper-1.03"}.get(t, ""),
               "latency_layer_sparsity": json.dumps([0.5, 0.6, 0.7, 0.8])}
        if ci:
            row.update({"latency_ci_low_ms": ms - 0.06, "latency_ci_high_ms": ms + 0.07,
                        "accuracy_ci_low": acc - 9, "accuracy_ci_high": acc + 8,
                        "accuracy_delta": acc - 75, "accuracy_delta_ci_low": acc - 78,
                        "accuracy_delta_ci_high": acc - 72,
                        "proxy_ci_low": row["proxy_score"] - 0.0005, "proxy_ci_high": row["proxy_score"] + 0.0005})
        else:
            row["latency_noise_ms"] = 0.05
        row.update({f"alpha_{i:03d}": a for i, a in enumerate(alphas)})
        rows.append(row)
    rows.append({"trial": 5, "state": "FAIL"})
    return pd.DataFrame(rows)


def _front(trials: pd.DataFrame, ci: bool) -> pd.DataFrame:
    front = trials[trials["trial"].isin(FRONT)].copy()
    front.insert(2, "accuracy", front["accuracy_full"])
    if ci:
        front["accuracy_low"], front["accuracy_high"] = front["accuracy_ci_low"], front["accuracy_ci_high"]
        front["vs_dense"] = ["faster; accuracy same", "faster; accuracy better"]
        front["vs_seed"] = ["faster than uniform-1.00; accuracy same", "accuracy better than paper-1.03"]
    return front.sort_values("latency_ms")


def _meta(ci: bool) -> dict:
    dense = {"ms": 3.5, "p10_ms": 3.2, "p90_ms": 4.6, "score": 0.0, "accuracy_full": 75.0,
             "per_task": {"demo_arith": 0.75}, "worker": "w0"}
    if ci:
        dense.update({"ci_low_ms": 3.44, "ci_high_ms": 3.57, "accuracy_ci_low": 66.0, "accuracy_ci_high": 83.0})
    return {"model": "demo", "identity": {"name": "demo", "config_hash": "sha256:abc", "num_layers": 4},
            "device": "cpu", "backend": "numba-cpu", "dtype": "torch.float32", "fidelity": "full",
            "accuracy_label": "lm-eval accuracy (points, demo_arith)", "dense": dense, "space": "per-layer",
            "sampler": "tpe", "budget": 6, "versions": {"optuna": "5.0.0", "torch": "2.13"},
            "command": "sparseinfer-dse search --model demo --budget 6", "wall_s_last_run": 169.9,
            "trials": {"COMPLETE": 5, "FAIL": 1}, "front_size": len(FRONT)}


def _verified(front: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for kind, name, src in (("dense", "dense", None), ("seed", "paper-1.03", 1), ("front", "trial-2", 2),
                            ("front", "trial-4", 4)):
        ms, acc = (3.52, 75.5) if src is None else (LATENCY[src] + 0.1, ACCURACY[src] - 1)
        row = {"trial": src, "kind": kind, "name": name, "latency_ms": ms, "latency_ci_low_ms": ms - 0.05,
               "latency_ci_high_ms": ms + 0.05, "accuracy": acc, "accuracy_low": acc - 8, "accuracy_high": acc + 8,
               "search_latency_ms": None if src is None else LATENCY[src],
               "search_accuracy": None if src is None else ACCURACY[src],
               "vs_dense": "" if src is None else "faster; accuracy same", "vs_seed": ""}
        row.update({f"alpha_{i:03d}": a for i, a in enumerate(ALPHAS.get(src, [1.0] * 4))})
        rows.append(row)
    return pd.DataFrame(rows)


def _folder(tmp_path, ci=True, verified=False):
    out = tmp_path / "out"
    out.mkdir(parents=True)
    trials = _trials(ci)
    trials.to_csv(out / "trials.csv", index=False)
    front = _front(trials, ci)
    front.to_csv(out / "pareto.csv", index=False)
    (out / "study.json").write_text(json.dumps(_meta(ci)))
    if verified:
        _verified(front).to_csv(out / "verified.csv", index=False)
    return out


def _table(page: str, cls: str) -> str:
    return re.search(rf'<table class="{cls}">.*?</table>', page, re.S).group(0)


FILES = ("report.html", "pareto.png", "alphas.png", "sparsity.png", "hypervolume.png", "pareto.html", "plotly.min.js")


def test_new_folder_shows_intervals_verdicts_and_a_readable_study_table(tmp_path):
    out = _folder(tmp_path)
    page = write_report(out).read_text()
    assert all((out / f).is_file() for f in FILES)
    front = _table(page, "front")
    assert "2.91 [2.85, 2.98]" in front and "74.0 [65.0, 82.0]" in front  # latency, accuracy with 95% intervals
    assert "faster; accuracy same" in front and "accuracy better than paper-1.03" in front
    assert "0.97 1.00 1.03 0.95" in front
    assert front.index(">2<") < front.index(">4<")  # fastest first, the front from pareto.csv (trial 3 is not on it)
    assert ">3<" not in front
    study = _table(page, "study").split(">", 1)[1]
    assert not re.search(r'[{}"]', study), study  # no JSON
    assert "num_layers: 4" in study and "optuna: 5.0.0" in study and "COMPLETE: 5" in study
    assert "3.500 [3.440, 3.570] ms/token" in study and "75.0 [66.0, 83.0]" in study
    assert "per_task: (demo_arith: 0.75)" in study and "2 min 50 s" in study
    assert 'href="pareto.html"' in page
    assert "<h2>Verified" not in page


def test_pareto_html_is_offline_and_hover_shows_alphas_intervals_and_verdicts(tmp_path):
    out = _folder(tmp_path)
    write_report(out)
    page = (out / "pareto.html").read_text()
    assert 'src="plotly.min.js"' in page and "cdn.plot.ly" not in page
    fig = interactive_figure(load(out))
    front = next(t for t in fig.data if t.name == "Pareto front")
    hover = front.hovertext[0]
    assert "trial 2" in hover and "0.97 1.00 1.03 0.95" in hover
    assert "2.910 [2.850, 2.980] ms" in hover and "74.0 [65.0, 82.0]" in hover
    assert "vs dense: faster; accuracy same" in hover
    assert front.error_x.visible and list(front.error_x.array) == pytest.approx([0.07, 0.07])
    seeds = next(t for t in fig.data if t.name == "seeds")
    assert "seed uniform-1.00" in seeds.hovertext[0]
    dense = next(t for t in fig.data if t.name == "dense")
    assert dense.error_y.visible and list(dense.error_y.arrayminus) == pytest.approx([9.0])


def test_plotly_js_is_written_once(tmp_path):
    out = _folder(tmp_path)
    write_report(out)
    before = (out / "plotly.min.js").stat().st_mtime_ns
    write_report(out)
    assert (out / "plotly.min.js").stat().st_mtime_ns == before


def test_verified_profiles_get_a_table_and_their_own_points(tmp_path):
    out = _folder(tmp_path, verified=True)
    page = write_report(out).read_text()
    table = _table(page, "verified")
    assert all(name in table for name in ("dense", "paper-1.03", "trial-2", "trial-4"))
    row = re.search(r"<tr><td>trial-2</td>.*?</tr>", table).group(0)
    assert "2.91 [2.85, 2.98]" in row and "3.01 [2.96, 3.06]" in row  # search-time next to verified
    assert "74.0 [65.0, 82.0]" in row and "73.0 [65.0, 81.0]" in row
    fig = interactive_figure(load(out))
    verified = next(t for t in fig.data if t.name == "verified")
    assert len(verified.x) == 4 and any("paper-1.03" in h for h in verified.hovertext)
    assert any("trial-2" in h and "at search: 2.910 ms, accuracy 74.0" in h for h in verified.hovertext)
    assert len(fig.layout.annotations) == 4  # an arrow from the search's point to each verified point
    ax = pareto_figure(load(out)).axes[0]
    assert "verified (verified.csv)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(1 for c in ax.texts if c.get_text() == "" and c.arrow_patch is not None) == 4
    dense = re.search(r"<tr><td>dense</td>.*?</tr>", table).group(0)
    assert "3.50 [3.44, 3.57]" in dense and "3.52 [3.47, 3.57]" in dense  # search-time (study.json) vs verified


def test_old_folder_without_intervals_or_verified_still_draws(tmp_path):
    out = _folder(tmp_path, ci=False)
    page = write_report(out).read_text()
    assert all((out / f).is_file() for f in FILES)
    front = _table(page, "front")
    assert "2.91 [2.86, 2.96]" in front  # latency +- its measured noise
    assert "<td>74.0</td>" in front  # accuracy without an interval: no brackets
    assert "measured noise" in front and "<h2>Verified" not in page
    hover = next(t for t in interactive_figure(load(out)).data if t.name == "Pareto front").hovertext[0]
    assert "0.97 1.00 1.03 0.95" in hover


def test_pareto_png_has_error_bars_only_where_there_are_intervals(tmp_path):
    from matplotlib.container import ErrorbarContainer

    new = pareto_figure(load(_folder(tmp_path / "a"))).axes[0]
    assert sum(isinstance(c, ErrorbarContainer) for c in new.containers) >= 3  # dominated, front, seeds, dense
    old = _folder(tmp_path / "b", ci=False)
    trials = pd.read_csv(old / "trials.csv").drop(columns="latency_noise_ms")
    trials.to_csv(old / "trials.csv", index=False)
    pd.read_csv(old / "pareto.csv").drop(columns="latency_noise_ms").to_csv(old / "pareto.csv", index=False)
    bare = pareto_figure(load(old)).axes[0]
    assert not [c for c in bare.containers if isinstance(c, ErrorbarContainer)]


def test_heatmap_ticks_are_whole_layers_and_trial_numbers(tmp_path):
    front = _front(_trials(True), True)
    ax = alpha_heatmap_figure(front).axes[0]
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert [t.get_text().split()[0] for t in ax.get_yticklabels()] == ["#2", "#4"]
    wide = pd.DataFrame([{"trial": 7.0, "latency_ms": 2.0, **{f"alpha_{i:03d}": 1.0 for i in range(32)}}])
    ax = alpha_heatmap_figure(wide).axes[0]
    assert list(ax.get_xticks()) == list(range(0, 32, 4))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(0, 32, 4)]
    assert ax.get_yticklabels()[0].get_text().startswith("#7 ")


def test_layer_ticks():
    assert layer_ticks(4) == [0, 1, 2, 3] and layer_ticks(16) == list(range(16))
    assert layer_ticks(32) == list(range(0, 32, 4)) and layer_ticks(80) == list(range(0, 80, 10))
    assert all(len(layer_ticks(n)) <= 16 and all(isinstance(t, int) for t in layer_ticks(n)) for n in range(1, 200))


def test_no_finished_trial_still_draws(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pd.DataFrame([{"trial": 0, "state": "FAIL", "latency_ms": None, "objective_accuracy": None}]).to_csv(
        out / "trials.csv", index=False)
    (out / "pareto.csv").write_text("")
    meta = {"model": "demo", "fidelity": "proxy", "dense": {"ms": 3.5, "score": 0.0}}
    (out / "study.json").write_text(json.dumps(meta))
    page = write_report(out).read_text()
    assert "no front yet" in page and all((out / f).is_file() for f in FILES)
    assert all((out / r).is_file() for r in re.findall(r'src="([^"]+)"', page))


def test_readable_metadata():
    assert readable({"a": 1, "b": {"c": 0.5, "d": [1, 2]}, "e": True}) == "a: 1, b: (c: 0.5, d: 1, 2), e: yes"
