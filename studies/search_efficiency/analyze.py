"""Hypervolume of every benchmark run, at equal trial count and at equal wall-clock time.

For each target the points are (latency ratio to dense, score): a trial's latency figure (measured,
or predicted by the latency model where staged latency kept the prediction, as the search itself
saw it) divided by the run's dense reference, and its proxy score (-KL in nats). The reference point
is common to all runs of a target: latency ratio 1.0 (nothing slower than dense counts) and a KL
ceiling per target (`MAX_KL`: a profile less accurate than that is of no use, so a strategy gains
nothing by filling that region). The hypervolume against the runs' nadir (the worst ratio and
score any run recorded: every point counts) is reported beside it, since the choice matters.

A run's clock starts when its command starts (model load, dense reference and, when not cached, the
latency model are charged to it) and stops between invocations when it was interrupted and resumed
(or its budget raised); a trial counts from the moment it completed. A staged run that found the
latency model in the cache is charged the model's one-off build when another run of the target
built it (each run's `search.log` says which: "measuring the latency model" or "latency model from
the cache"; the build is the builder's set-up minus the others'), since a user pays it once per
device and model; when every run found it cached, no run is charged.

    python studies/search_efficiency/analyze.py studies/search_efficiency/runs

writes `summary.json`, `hypervolume-<target>.png` and prints a table per target.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402

from sparseinfer_dse.search.pareto import hypervolume_2d  # noqa: E402

HERE = Path(__file__).resolve().parent
# KL ceilings (nats) of the reference point. demo: uniform alpha 0.90 has KL 0.009 and loses 9 points
# of its 77.5% arithmetic accuracy, 0.80 has 0.07 and loses 43 (README, proxy correlation); SmolLM2:
# uniform 50% sparsity, the published methods' middle setting, has KL 0.42.
MAX_KL = {"demo": 0.05, "smollm2": 0.5}
DEFAULT_MAX_KL = 0.5


def load_run(folder: Path) -> dict[str, Any] | None:
    """One run's COMPLETE trials but the dense seed, in completion order: elapsed seconds, latency
    ratio, score."""
    info_path, db = folder / "run.json", folder / "study.db"
    if not info_path.exists() or not db.exists():
        return None
    info = json.loads(info_path.read_text())
    meta = json.loads((folder / "study.json").read_text())
    dense_ms = float(meta["dense"]["ms"])
    study = optuna.load_study(study_name=meta["study_name"], storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    # the dense seed is the reference itself (true ratio 1, KL 0): its measured ratio is noise around 1,
    # and below 1 it would give a run area it did not find
    done = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                   and t.user_attrs.get("seed") != "dense"), key=lambda t: t.datetime_complete)
    if not done:
        return None
    spans = [(i["start"], i.get("end", float("inf"))) for i in info["invocations"]]
    log = folder / "search.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    built = True if "measuring the latency model" in text else False if "latency model from the cache" in text else None
    first = min(t.datetime_start.timestamp() for t in done)
    ends = [t.datetime_complete.timestamp() for t in done]
    return {"folder": folder.name, "sampler": info["sampler"], "latency": info["latency"], "seed": info["seed"],
            "setup_s": first - min(a for a, _ in spans), "elapsed_s": [running_time(spans, e) for e in ends],
            "resumed": len(spans) > 1, "built_model": built,
            "ratio": [t.values[0] / dense_ms for t in done], "score": [t.values[1] for t in done],
            "measured": [(t.user_attrs.get("fidelity") or {}).get("latency") == "measured" for t in done]}


def running_time(spans: list[tuple[float, float]], moment: float) -> float:
    """Seconds the benchmark's commands had run by `moment` (a run resumed later is not charged the
    time between its invocations)."""
    return float(sum(min(max(moment - a, 0.0), b - a) for a, b in spans))


def curve(run: dict, ref: tuple[float, float], n: int) -> float:
    """Hypervolume of the run's first n trials."""
    return hypervolume_2d(run["ratio"][:n], run["score"][:n], ref[0], ref[1])


def at_time(run: dict, ref: tuple[float, float], t: float, clock: str = "elapsed_s") -> float:
    """Hypervolume of the trials completed by `t` seconds on the run's `clock` (`clock` once charged)."""
    n = int(np.searchsorted(np.asarray(run[clock]), t, side="right"))
    return curve(run, ref, n)


def spread(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


def analyze_target(runs: list[dict], max_kl: float) -> dict[str, Any]:
    ref = (1.0, -max_kl)
    nadir = (max(max(r["ratio"]) for r in runs) * 1.0001, min(min(r["score"]) for r in runs) - 1e-9)
    build = _latency_model_build_s(runs)
    for r in runs:
        r["charge_s"] = build if r["latency"] == "staged" and not _built(r, runs) else 0.0  # the builder paid in set-up
        r["clock"] = [e + r["charge_s"] for e in r["elapsed_s"]]
    trials = min(len(r["ratio"]) for r in runs)
    horizon = min(r["clock"][-1] for r in runs)
    configs: dict[str, list[dict]] = {}
    for r in runs:
        configs.setdefault(f"{r['sampler']}-{r['latency']}", []).append(r)
    union = hypervolume_2d([x for r in runs for x in r["ratio"]], [x for r in runs for x in r["score"]], *ref)
    out: dict[str, Any] = {"reference_point": {"latency_ratio": ref[0], "score": ref[1]},
                           "nadir_point": {"latency_ratio": nadir[0], "score": nadir[1]},
                           "equal_trials": trials, "equal_time_s": horizon, "latency_model_build_s": build,
                           "union_trials": sum(len(r["ratio"]) for r in runs), "union_hypervolume": union,
                           "configs": {}}
    baseline = {r["seed"]: r for r in configs.get("random-measured", configs.get("random-staged", []))}
    for name, rs in sorted(configs.items()):
        rs.sort(key=lambda r: r["seed"])
        hv_n = [curve(r, ref, trials) for r in rs]
        hv_t = [at_time(r, ref, horizon, "clock") for r in rs]
        beats = [at_time(r, ref, horizon, "clock") > at_time(baseline[r["seed"]], ref, horizon, "clock")
                 for r in rs if r["seed"] in baseline and baseline[r["seed"]] is not r]
        out["configs"][name] = {
            "seeds": [r["seed"] for r in rs],
            "hypervolume_at_equal_trials": spread(hv_n),
            "fraction_of_union_at_equal_trials": spread([h / union for h in hv_n]),
            "hypervolume_at_equal_time": spread(hv_t),
            "nadir_hypervolume_at_equal_time": spread([at_time(r, nadir, horizon, "clock") for r in rs]),
            "trials_done_at_equal_time": [int(np.searchsorted(r["clock"], horizon, side="right")) for r in rs],
            "seconds_per_trial": spread([(r["elapsed_s"][-1] - r["setup_s"]) / len(r["elapsed_s"]) for r in rs]),
            "setup_s": spread([r["setup_s"] for r in rs]),
            "latency_measured_fraction": spread([float(np.mean(r["measured"])) for r in rs]),
            "beats_random_at_equal_time": (f"{sum(beats)} of {len(beats)}" if beats else None),
            "resumed_runs": [r["folder"] for r in rs if r["resumed"]],
        }
    return out


def _built(run: dict, runs: list[dict]) -> bool:
    """Whether this run built the latency model: its log says so, or (no log) it has the largest
    staged set-up."""
    if run["latency"] != "staged":
        return False
    if run.get("built_model") is not None:
        return bool(run["built_model"])
    return run is max((x for x in runs if x["latency"] == "staged"), key=lambda x: x["setup_s"])


def _latency_model_build_s(runs: list[dict]) -> float:
    """The latency model's one-off cost: the builder's set-up minus the median set-up of the others.
    0 when every staged run's log says it found the model cached: then the cost is unknown here and
    charged to no run (fair among staged runs, not against measured ones)."""
    builders = [r["setup_s"] for r in runs if _built(r, runs)]
    if not builders:
        return 0.0
    measured = [r["setup_s"] for r in runs if r["latency"] == "measured"]
    others = [r["setup_s"] for r in runs if r["latency"] == "staged" and not _built(r, runs)]
    return max(0.0, max(builders) - float(np.median(measured or others or builders)))


def plot(target: str, runs: list[dict], summary: dict, out: Path) -> None:
    ref = (summary["reference_point"]["latency_ratio"], summary["reference_point"]["score"])
    fig, (ax_t, ax_n) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    configs = sorted({f"{r['sampler']}-{r['latency']}" for r in runs})
    for color, name in zip(colors, configs):
        rs = [r for r in runs if f"{r['sampler']}-{r['latency']}" == name]
        grid = np.linspace(0, summary["equal_time_s"], 60)
        hv = np.array([[at_time(r, ref, t, "clock") for t in grid] for r in rs])
        ax_t.plot(grid / 60, np.median(hv, axis=0), color=color, label=f"{name} ({len(rs)} seeds)")
        ax_t.fill_between(grid / 60, hv.min(axis=0), hv.max(axis=0), color=color, alpha=0.15)
        n = summary["equal_trials"]
        hvn = np.array([[curve(r, ref, k) for k in range(1, n + 1)] for r in rs])
        ax_n.plot(range(1, n + 1), np.median(hvn, axis=0), color=color, label=name)
        ax_n.fill_between(range(1, n + 1), hvn.min(axis=0), hvn.max(axis=0), color=color, alpha=0.15)
    ax_t.set_xlabel("wall-clock minutes (set-up included)")
    ax_n.set_xlabel("completed trials (seeds included)")
    for ax in (ax_t, ax_n):
        ax.set_ylabel("hypervolume (latency ratio x -KL)")
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"{target}: hypervolume, median over seeds, band min-max")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def table(target: str, s: dict) -> str:
    lines = [f"## {target}", "",
             f"Reference point: latency ratio {s['reference_point']['latency_ratio']:.4f}, score "
             f"{s['reference_point']['score']:.4g} (nadir: {s['nadir_point']['latency_ratio']:.4f}, "
             f"{s['nadir_point']['score']:.4g}); equal trials {s['equal_trials']}, equal time "
             f"{s['equal_time_s'] / 60:.1f} min; latency model build charged to staged runs "
             f"{s['latency_model_build_s']:.0f} s; the union of all {s['union_trials']} trials of all runs has "
             f"hypervolume {s['union_hypervolume']:.4g} (the best known front).", "",
             "| strategy | seeds | HV at equal time, median [min, max] | trials by then | HV at equal trials, median [min, max] "
             "| of the union's | s/trial | latency measured | beats random at equal time | HV at equal time vs the nadir |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in s["configs"].items():
        t, n, d = c["hypervolume_at_equal_time"], c["hypervolume_at_equal_trials"], c["nadir_hypervolume_at_equal_time"]
        lines.append(f"| {name} | {len(c['seeds'])} | {t['median']:.4g} [{t['min']:.4g}, {t['max']:.4g}] | "
                     f"{', '.join(map(str, c['trials_done_at_equal_time']))} | {n['median']:.4g} [{n['min']:.4g}, {n['max']:.4g}] | "
                     f"{100 * c['fraction_of_union_at_equal_trials']['median']:.0f}% | "
                     f"{c['seconds_per_trial']['median']:.1f} | {100 * c['latency_measured_fraction']['median']:.0f}% | "
                     f"{c['beats_random_at_equal_time'] or '-'} | {d['median']:.4g} [{d['min']:.4g}, {d['max']:.4g}] |")
    return "\n".join(lines)


def main(root: str) -> None:
    root_p = Path(root)
    summary: dict[str, Any] = {}
    for target_dir in sorted(p for p in root_p.iterdir() if p.is_dir()):
        runs = [r for r in (load_run(f) for f in sorted(target_dir.iterdir()) if f.is_dir()) if r]
        if not runs:
            continue
        summary[target_dir.name] = analyze_target(runs, MAX_KL.get(target_dir.name, DEFAULT_MAX_KL))
        plot(target_dir.name, runs, summary[target_dir.name], root_p.parent / f"hypervolume-{target_dir.name}.png")
        print(table(target_dir.name, summary[target_dir.name]) + "\n")
    tmp = root_p.parent / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(root_p.parent / "summary.json")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Hypervolume of every benchmark run under RUNS/<target>/, at equal "
                                     "trial count and equal wall-clock time; writes summary.json and "
                                     "hypervolume-<target>.png beside RUNS and prints a table per target.")
    parser.add_argument("runs", nargs="?", default=str(HERE / "runs"),
                        help="folder of <target>/<sampler>-<latency>-s<seed>/ runs (default: %(default)s)")
    args = parser.parse_args()
    if not Path(args.runs).is_dir():
        parser.error(f"no such folder: {args.runs}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main(args.runs)
