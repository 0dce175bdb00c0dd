"""Several alpha profiles and dense timed together, interleaved, for a verdict between them.

A search times each profile against dense in its own trial; comparing two trials then compares
two measurements made minutes apart. Verification times all candidates in one run: every round,
for every prompt, dense and each profile decode the same tokens in rotating order, so drifts in
machine load hit all alike. Each profile gets its paired per-run ratios to dense (same prompt,
same round) and the median's order-statistic interval (sparseinfer_dse.stats).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Mapping, Optional

from sparseinfer_dse.engine.decode import Workload, replay
from sparseinfer_dse.engine.latency import MAIN_VARIANT, VARIANTS
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.engine.sparsify import SparsifiedModel
from sparseinfer_dse.errors import OptionError
from sparseinfer_dse.stats import median_interval

DENSE = "dense"


def measure_profiles(handle: SparsifiedModel, workload: Workload, profiles: Mapping[str, Profile], *,
                     repeats: int, warmup: int = 1,
                     progress: Optional[Callable[[int], None]] = None) -> dict[str, dict[str, Any]]:
    """Time dense and every profile (name -> profile), interleaved, `repeats` rounds over the prompts.

    Returns per name (and `dense`): `ms` (median per-token ms over runs), `run_ms` (each run's mean),
    `ms_ci_low`/`ms_ci_high`; per profile also `run_ratios`, `ratio`, `ratio_ci_low`/`ratio_ci_high`,
    `ratio_ci_coverage`. `progress(n)` is called after every n runs. The handle's profile and options
    are restored on return.
    """
    if repeats < 1:
        raise OptionError("repeats", "{repeats} must be at least 1")
    if DENSE in profiles:
        raise ValueError(f"{DENSE!r} is the reference's name; give the profiles other names")
    names = [DENSE, *profiles]
    run_ms: dict[str, list[float]] = {n: [] for n in names}
    model = handle.model

    def run(name: str, prompt_run: Any) -> float:
        if name == DENSE:
            handle.configure(enabled=False)
        else:
            handle.set_profile(profiles[name])
            handle.configure(enabled=True, predict=True, **VARIANTS[MAIN_VARIANT])
        ms, _ = replay(model, prompt_run, workload.device, workload.decoder)
        if progress is not None:
            progress(1)
        return statistics.fmean(ms)

    with handle.restoring(collect=False):
        for _ in range(warmup):
            for name in names:
                run(name, workload.runs[0])
        slot = 0
        for _ in range(repeats):
            for prompt_run in workload.runs:
                shift = slot % len(names)
                for name in names[shift:] + names[:shift]:
                    run_ms[name].append(run(name, prompt_run))
                slot += 1

    out: dict[str, dict[str, Any]] = {}
    for name in names:
        iv = median_interval(run_ms[name])
        row: dict[str, Any] = {"ms": iv.estimate, "ms_ci_low": iv.low, "ms_ci_high": iv.high, "run_ms": run_ms[name],
                               "runs": len(run_ms[name])}
        if name != DENSE:
            ratios = [v / d for d, v in zip(run_ms[DENSE], run_ms[name])]
            r = median_interval(ratios)
            row.update(run_ratios=ratios, ratio=r.estimate, ratio_ci_low=r.low, ratio_ci_high=r.high,
                       ratio_ci_coverage=r.coverage)
        out[name] = row
    return out


def runs_needed(profiles: int, prompts: int, repeats: int, warmup: int = 1) -> int:
    """How many decode runs `measure_profiles` makes (for a progress bar)."""
    return (profiles + 1) * (warmup + repeats * prompts)
