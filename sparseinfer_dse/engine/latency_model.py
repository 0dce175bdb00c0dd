"""A calibrated latency model: a profile's decode-step time predicted from its per-layer levels.

Measuring a profile's latency takes a few seconds of decoding per trial (and much more on a big
model); predicting it takes microseconds. The model is measured once per device, model and method:

- **per layer and level**: each layer's MLP call is timed on its own recorded decode inputs, at
  every level of a grid (and dense), the layers called in model order for each token so that, as
  in a real step, a layer's weights are not in cache from its previous call; the median per call;
- **the rest of the step**: dense and the uniform profiles of the grid are timed as whole steps in
  one interleaved run (`latency_profiles.measure_profiles`); for each uniform profile, its step
  time minus its layers' modelled times is what the step spends outside the MLPs; their median is
  the model's `rest_ms` (the sparse step's, which also holds the kernels' per-call costs that the
  isolated calls do not see).

A profile's predicted step is `rest_ms + sum over layers of the layer's time at its level`
(linear in the level between grid points, clamped at the ends), and its predicted ratio to dense
divides that by the dense step of the same run. The model covers one method.

For a ranked method (R-Sparse: a low-rank remainder of the skipped channels per layer), each layer
is also timed at the middle level of the grid with each rank of a rank grid; what a rank adds to
the call (its time minus the rank-0 call's, at least 0) is added to the layer's time at any level
(the remainder's products do not depend on the level), linear in the rank between grid points. The
uniform profiles that fit the rest then carry the middle rank.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from sparseinfer_dse.engine.decode import Workload, replay
from sparseinfer_dse.engine.latency import MAIN_VARIANT, VARIANTS
from sparseinfer_dse.engine.latency_profiles import DENSE, measure_profiles
from sparseinfer_dse.engine.latency_profiles import runs_needed as profile_runs
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.engine.sparsify import SparsifiedModel
from sparseinfer_dse.errors import UserError


@dataclass(frozen=True)
class LatencyModel:
    method: str
    grid: tuple[float, ...]  # the levels measured, ascending
    layer_ms: tuple[tuple[float, ...], ...]  # [layer][grid point]: ms per decode call of the layer's MLP
    dense_layer_ms: tuple[float, ...]  # ms per call of each layer's dense MLP
    rest_ms: float  # the sparse step's time outside the MLPs
    dense_step_ms: float  # the dense step of the calibration run
    rest_spread_ms: tuple[float, float] = (0.0, 0.0)  # min and max of the per-uniform-profile rest estimates
    info: dict[str, Any] = field(default_factory=dict)  # where and how it was measured
    ranks: tuple[int, ...] = ()  # ranked methods: the remainder ranks measured, ascending, 0 first
    rank_ms: tuple[tuple[float, ...], ...] = ()  # [layer][rank point]: ms a call's remainder adds

    @property
    def num_layers(self) -> int:
        return len(self.layer_ms)

    def layer_time(self, layer: int, level: Optional[float], rank: int = 0) -> float:
        if level is None:
            return self.dense_layer_ms[layer]
        t = float(np.interp(level, self.grid, self.layer_ms[layer]))
        return t + float(np.interp(rank, self.ranks, self.rank_ms[layer])) if rank and self.ranks else t

    def predict_ms(self, profile: Profile) -> float:
        """The predicted decode-step ms of `profile` (this model's method; ranks if the model has them)."""
        if profile.num_layers != self.num_layers:
            raise UserError(f"the profile has {profile.num_layers} layers, the latency model {self.num_layers}")
        if set(profile.methods) != {self.method} or (profile.ranks is not None and not self.ranks):
            raise UserError(f"the latency model covers {self.method}{'' if self.ranks else ' without ranks'}; "
                            f"the profile is {profile.method}{' with ranks' if profile.ranks else ''}")
        return self.rest_ms + sum(self.layer_time(i, a, profile.rank_of(i)) for i, a in enumerate(profile.levels))

    def predict_ratio(self, profile: Profile) -> float:
        """Predicted sparse/dense step ratio (what a search trial's latency measures)."""
        return self.predict_ms(profile) / self.dense_step_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyModel":
        return cls(method=data["method"], grid=tuple(data["grid"]),
                   layer_ms=tuple(tuple(r) for r in data["layer_ms"]), dense_layer_ms=tuple(data["dense_layer_ms"]),
                   rest_ms=float(data["rest_ms"]), dense_step_ms=float(data["dense_step_ms"]),
                   rest_spread_ms=tuple(data.get("rest_spread_ms", (0.0, 0.0))), info=dict(data.get("info", {})),
                   ranks=tuple(int(r) for r in data.get("ranks", ())),
                   rank_ms=tuple(tuple(r) for r in data.get("rank_ms", ())))


def _record_inputs(handle: SparsifiedModel, workload: Workload, tokens: int) -> list[list[torch.Tensor]]:
    """Each layer's MLP input at the first `tokens` dense decode steps of the workload's first prompt."""
    seen: list[list[torch.Tensor]] = [[] for _ in handle.layers]

    def hook(i: int):
        def pre(module: Any, args: Any) -> None:
            x = args[0]
            if x.dim() == 3 and x.shape[1] == 1 and len(seen[i]) < tokens:
                seen[i].append(x.detach().clone())
        return pre

    hooks = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(handle.layers)]
    try:
        with handle.options_set(enabled=False):
            replay(handle.model, workload.runs[0], workload.device)
    finally:
        for h in hooks:
            h.remove()
    if any(not xs for xs in seen):
        raise UserError("the latency workload has no decode step to record the MLP inputs from")
    return seen


Setting = tuple[Optional[float], int]  # (level, rank); level None: dense


@torch.inference_mode()
def _time_layers(handle: SparsifiedModel, inputs: list[list[torch.Tensor]], settings: Sequence[Setting],
                 method: str, repeats: int, tick: Callable[[], None]) -> dict[Setting, list[float]]:
    """Median ms per call of every layer at every (level, rank); settings in rotating order, every round."""
    calls: dict[Setting, list[list[float]]] = {s: [[] for _ in handle.layers] for s in settings}
    n_tok = min(len(xs) for xs in inputs)
    for r in range(repeats):
        order = list(settings[r % len(settings):]) + list(settings[:r % len(settings)])
        for level, rank in order:
            if level is None:
                handle.configure(enabled=False)
            else:
                handle.set_profile(Profile.uniform(len(handle.layers), level, method=method, rank=rank or None))
                handle.configure(enabled=True, predict=True, **VARIANTS[MAIN_VARIANT])
            for j in range(n_tok):
                for i, layer in enumerate(handle.layers):  # model order: the previous call was another layer's
                    t0 = time.perf_counter()
                    layer(inputs[i][j])
                    calls[(level, rank)][i].append((time.perf_counter() - t0) * 1e3)
            tick()
    return {s: [statistics.median(c) for c in per_layer] for s, per_layer in calls.items()}


def build_latency_model(handle: SparsifiedModel, workload: Workload, grid: Sequence[float], *, method: str,
                        ranks: Sequence[int] = (), repeats: int = 3, tokens: int = 8,
                        info: Optional[dict[str, Any]] = None,
                        progress: Optional[Callable[[int], None]] = None) -> LatencyModel:
    """Measure the latency model of `handle` (its method `method`) over the level `grid` (and, for a
    ranked method, the remainder's `ranks`)."""
    grid = tuple(sorted(float(a) for a in grid))
    if len(grid) < 2:
        raise UserError("the latency model needs at least two grid levels")
    rank_grid = tuple(sorted({0, *(int(r) for r in ranks)})) if ranks else ()
    mid, mid_rank = grid[len(grid) // 2], (rank_grid[len(rank_grid) // 2] if rank_grid else 0)
    settings: list[Setting] = [(None, 0), *((a, 0) for a in grid), *((mid, r) for r in rank_grid if r)]
    tick = (lambda: progress(1)) if progress is not None else (lambda: None)
    with handle.restoring(collect=False):
        inputs = _record_inputs(handle, workload, tokens)
        per = _time_layers(handle, inputs, settings, method, repeats, tick)
        uniform = {f"uniform-{a:g}" + (f"-r{mid_rank}" if mid_rank else ""):
                   Profile.uniform(len(handle.layers), a, method=method, rank=mid_rank or None) for a in grid}
        steps = measure_profiles(handle, workload, uniform, repeats=repeats, progress=progress)
    dense_ms = steps[DENSE]["ms"]
    rank_ms = tuple(tuple(max(0.0, per[(mid, r)][i] - per[(mid, 0)][i]) if r else 0.0 for r in rank_grid)
                    for i in range(len(handle.layers))) if rank_grid else ()
    layers_only = LatencyModel(method=method, grid=grid, layer_ms=tuple(zip(*(per[(a, 0)] for a in grid))),
                               dense_layer_ms=tuple(per[(None, 0)]), rest_ms=0.0, dense_step_ms=dense_ms,
                               ranks=rank_grid, rank_ms=rank_ms)
    rests = [steps[name]["ratio"] * dense_ms - layers_only.predict_ms(p) for name, p in uniform.items()]
    return replace(layers_only, rest_ms=statistics.median(rests), rest_spread_ms=(min(rests), max(rests)),
                   info={**(info or {}), "repeats": repeats, "tokens": tokens,
                         "uniform_ratios": {n: steps[n]["ratio"] for n in uniform}})


def runs_needed(grid: int, prompts: int, repeats: int, ranks: int = 0) -> int:
    """Progress ticks of build_latency_model (`ranks`: the nonzero ranks of its rank grid): the
    per-layer rounds, then measure_profiles' runs."""
    return repeats * (grid + 1 + ranks) + profile_runs(grid, prompts, repeats)
