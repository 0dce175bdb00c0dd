"""A/A check: the same profile measured as separate trials must be judged "not different".

Measures each of a few profiles `--trials` times as separate search trials (round-robin, as a search
interleaves them with other work), with the search's own evaluator and settings (studies/demo.toml
unless --study), and judges every pair of trials of the same profile with the verdict the front
uses (search/pareto.py). Writes the false-difference rate and the interval widths to JSON.

    OMP_WAIT_POLICY=PASSIVE python studies/aa/aa_rate.py --trials 8 --out studies/aa/aa_rate.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=ROOT / "studies" / "demo.toml")
    ap.add_argument("--trials", type=int, default=8, help="measurements of each profile")
    ap.add_argument("--accuracy", action="store_true", help="also run lm-eval on every trial (slow)")
    ap.add_argument("--out", type=Path, default=ROOT / "studies" / "aa" / "aa_rate.json")
    args = ap.parse_args()

    from tqdm import tqdm

    from sparseinfer_dse.engine.profile import Profile
    from sparseinfer_dse.eval.items import unpack
    from sparseinfer_dse.machine import thread_counts
    from sparseinfer_dse.search.evaluator import SearchEvaluator
    from sparseinfer_dse.search.options import SearchOptions
    from sparseinfer_dse.search.pareto import Measured, faster, more_accurate

    opts = SearchOptions.resolve({}, args.study)
    ev = SearchEvaluator.load(opts)
    lm = ev.lm
    dense = ev.dense()
    ev.reference_ms, ev.dense_items = dense["ms"], dense.get("items")
    n = len(lm.mlps)
    profiles = {"uniform-1.00": Profile.uniform(n, 1.0), "paper-1.03": Profile.paper(n, 1.03),
                "uniform-0.90": Profile.uniform(n, 0.90)}
    points: dict[str, list[Measured]] = {k: [] for k in profiles}
    lat_rows: dict[str, list[dict]] = {k: [] for k in profiles}
    t0 = time.perf_counter()
    with tqdm(total=args.trials * len(profiles), unit="trial", desc="A/A") as bar:
        for _ in range(args.trials):
            for name, prof in profiles.items():
                lat = ev.latency(prof)
                if args.accuracy:
                    acc = ev.full(prof)
                    a, lo, hi, items = acc["accuracy"], acc.get("accuracy_ci_low"), acc.get("accuracy_ci_high"), \
                        tuple(v for t in acc["items"] for v in unpack(acc["items"][t]))
                else:
                    prox = ev.proxy(prof)
                    a, lo, hi, items = prox["score"], prox["ci_low"], prox["ci_high"], tuple(unpack(prox["items"]))
                points[name].append(Measured(lat["ms"], a, lat["ci_low_ms"], lat["ci_high_ms"], lo, hi, items))
                lat_rows[name].append({k: lat[k] for k in ("ms", "ci_low_ms", "ci_high_ms", "ratio", "ratio_ci_low",
                                                           "ratio_ci_high", "dense_ms")})
                bar.update()
    pairs = lat_diff = acc_diff = 0
    per_profile = {}
    for name, pts in points.items():
        d_lat = sum(faster(a, b) != 0 for a, b in itertools.combinations(pts, 2))
        d_acc = sum(more_accurate(a, b) != 0 for a, b in itertools.combinations(pts, 2))
        either = sum(faster(a, b) != 0 or more_accurate(a, b) != 0 for a, b in itertools.combinations(pts, 2))
        k = len(pts) * (len(pts) - 1) // 2
        pairs += k
        lat_diff += d_lat
        acc_diff += d_acc
        widths_ms = [p.latency_high - p.latency_low for p in pts]
        per_profile[name] = {
            "pairs": k, "judged_different": either, "latency_different": d_lat, "accuracy_different": d_acc,
            "ms_median": statistics.median(p.latency for p in pts),
            "ms_spread_between_trials": [min(p.latency for p in pts), max(p.latency for p in pts)],
            "latency_ci_width_ms_median": statistics.median(widths_ms),
            "latency_ci_width_pct_median": 100 * statistics.median(w / p.latency for w, p in zip(widths_ms, pts)),
            "accuracy": statistics.median(p.accuracy for p in pts),
            "accuracy_ci_width_median": statistics.median(p.accuracy_high - p.accuracy_low for p in pts),
            "trials": lat_rows[name],
        }
    different = sum(v["judged_different"] for v in per_profile.values())
    result = {
        "what": "A/A: the same profile measured as separate trials, every pair judged with the front's verdict",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "study": str(args.study.relative_to(ROOT) if args.study.is_relative_to(ROOT) else args.study),
        "accuracy_measure": "lm-eval" if args.accuracy else f"proxy ({opts.proxy_metric})",
        "latency_runs_per_trial": opts.latency_repeats * opts.latency_prompts,
        "trials_per_profile": args.trials, "pairs": pairs, "judged_different": different,
        "false_difference_rate": different / pairs, "latency_false_difference_rate": lat_diff / pairs,
        "accuracy_false_difference_rate": acc_diff / pairs,
        "dense": {k: dense[k] for k in ("ms", "ci_low_ms", "ci_high_ms")},
        "threads": thread_counts(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "wall_s": round(time.perf_counter() - t0, 1), "profiles": per_profile,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"A/A: {different} of {pairs} pairs judged different ({100 * different / pairs:.1f}%; latency "
          f"{lat_diff}, accuracy {acc_diff}); wrote {args.out}")
    for name, v in per_profile.items():
        print(f"  {name}: {v['ms_median']:.3f} ms/token, 95% CI width {v['latency_ci_width_ms_median']:.3f} ms "
              f"({v['latency_ci_width_pct_median']:.1f}%), accuracy {v['accuracy']:.4g} +- "
              f"{v['accuracy_ci_width_median'] / 2:.3g}; different pairs {v['judged_different']}/{v['pairs']}")


if __name__ == "__main__":
    main()
