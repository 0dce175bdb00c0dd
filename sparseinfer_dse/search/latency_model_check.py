"""`bench latency-model`: build (or load) a study's calibrated latency model and measure its error on
held-out profiles.

The model (`engine/latency_model.py`) is measured once per device, model, method, calibration and
thread count, and cached (`latency_model_store.py`). The check draws random
per-layer profiles on the study's level grid (around random centres, so they span the grid; never
the uniform ones the model was fitted on),
times them with dense in one interleaved run, and compares each measured paired ratio (with its
95% interval) with the model's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from sparseinfer_dse.engine.decode import prepare_workload
from sparseinfer_dse.engine.latency_profiles import measure_profiles
from sparseinfer_dse.engine.latency_profiles import runs_needed as profile_runs
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.errors import OptionError
from sparseinfer_dse.search.latency_model_store import grid_levels, latency_model
from sparseinfer_dse.search.model_setup import load_search_model
from sparseinfer_dse.search.options import SearchOptions

@dataclass(frozen=True)
class LatencyModelCheck:
    """The options of one `bench latency-model` run."""

    study: SearchOptions
    heldout: int = 8
    grid_points: int = 5
    repeats: Optional[int] = None  # default: the study's latency_repeats
    seed: int = 0
    use_cache: bool = True


def heldout_profiles(n: int, layers: int, low: float, high: float, step: float, method: str,
                     seed: int, spread: int = 3, ranks: Optional[Sequence[int]] = None) -> dict[str, Profile]:
    """`n` per-layer profiles on the grid low..high by step: each draws a centre uniformly on the
    grid, then every layer's level within `spread` steps of it (clipped), so that the profiles span
    the grid's whole range of step times and are not uniform. With `ranks` (a ranked method's rank
    grid), every layer also draws its rank from it."""
    rng = np.random.default_rng(seed)
    points = int(round((high - low) / step))
    out = {}
    for h in range(n):
        centre = int(rng.integers(0, points + 1))
        ks = np.clip(centre + rng.integers(-spread, spread + 1, size=layers), 0, points)
        levels = tuple(round(low + step * int(k), 6) for k in ks)
        per_rank = tuple(int(r) for r in rng.choice(list(ranks), size=layers)) if ranks else None
        out[f"heldout-{h}"] = Profile(levels, name=f"heldout-{h}", methods=method, ranks=per_rank)
    return out


def run_latency_model_check(check: LatencyModelCheck, say: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    opts = check.study
    if check.heldout < 1 or check.grid_points < 2:
        raise OptionError("heldout", "{heldout} must be at least 1 and --grid-points at least 2")
    repeats = check.repeats or opts.latency_repeats
    sm = load_search_model(opts, say=say, progress=True)
    lm, handle, method = sm.lm, sm.handle, sm.method
    grid = opts.grid_for(method)
    levels = grid_levels(opts, method, check.grid_points)
    prompts = gsm8k_prompts(opts.latency_prompts, opts.data_dir)
    workload = prepare_workload(lm.model, lm.tokenizer, prompts, opts.latency_tokens, handle)
    model, path = latency_model(sm, opts, workload, points=check.grid_points, repeats=repeats,
                                use_cache=check.use_cache, say=say)
    from tqdm.auto import tqdm

    ranks = list(range(grid.rank_low, grid.rank_high + 1, grid.rank_step)) if grid.ranked else None
    held = heldout_profiles(check.heldout, len(handle.layers), grid.low, grid.high, grid.step, method, check.seed,
                            ranks=ranks)
    with tqdm(total=profile_runs(len(held), len(workload.runs), repeats), desc="held-out profiles", unit="run",
              leave=False) as bar:
        measured = measure_profiles(handle, workload, held, repeats=repeats, progress=bar.update)
    rows = []
    for name, prof in held.items():
        m = measured[name]
        pred = model.predict_ratio(prof)
        rows.append({"profile": name, "mean_level": float(np.mean(prof.levels)), "levels": list(prof.levels),
                     **({"ranks": list(prof.ranks)} if prof.ranks else {}),
                     "predicted_ratio": pred, "measured_ratio": m["ratio"], "ratio_ci_low": m["ratio_ci_low"],
                     "ratio_ci_high": m["ratio_ci_high"], "error": pred / m["ratio"] - 1.0,
                     "inside_interval": m["ratio_ci_low"] <= pred <= m["ratio_ci_high"]})
    errors = [abs(r["error"]) for r in rows]
    handle.undo()
    return {"method": method, "grid": levels, "latency_model": model.to_dict(), "cache": str(path), "heldout": rows,
            "dense_ms": measured["dense"]["ms"], "median_abs_error": float(np.median(errors)),
            "max_abs_error": float(max(errors)), "inside_interval": sum(r["inside_interval"] for r in rows),
            "repeats": repeats, "seed": check.seed, **model.info}


def format_check(res: dict[str, Any]) -> str:
    m = res["latency_model"]
    lines = [f"latency model of {res['method']} on {res['device']}: rest of the step "
             f"{m['rest_ms']:.2f} ms (uniform fits {m['rest_spread_ms'][0]:.2f}-{m['rest_spread_ms'][1]:.2f}), "
             f"dense step {m['dense_step_ms']:.2f} ms, MLPs dense {sum(m['dense_layer_ms']):.2f} ms",
             f"{'profile':<12} {'mean level':>10} {'predicted':>10} {'measured [95% interval]':>28} {'error':>7}"]
    for r in res["heldout"]:
        lines.append(f"{r['profile']:<12} {r['mean_level']:>10.3f} {r['predicted_ratio']:>10.3f} "
                     f"{r['measured_ratio']:>9.3f} [{r['ratio_ci_low']:.3f}, {r['ratio_ci_high']:.3f}]"
                     f"{'' if r['inside_interval'] else ' *':>2} {100 * r['error']:>+6.1f}%")
    lines.append(f"median |error| {100 * res['median_abs_error']:.1f}%, max {100 * res['max_abs_error']:.1f}%; "
                 f"prediction inside the measured interval for {res['inside_interval']} of {len(res['heldout'])} "
                 f"(* = outside)")
    return "\n".join(lines)
