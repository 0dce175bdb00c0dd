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
divides that by the dense step of the same run. The model covers one method without low-rank
remainders (rsparse profiles with ranks are refused).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
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

    @property
    def num_layers(self) -> int:
        return len(self.layer_ms)

    def layer_time(self, layer: int, level: Optional[float]) -> float:
        if level is None:
            return self.dense_layer_ms[layer]
        return float(np.interp(level, self.grid, self.layer_ms[layer]))

    def predict_ms(self, profile: Profile) -> float:
        """The predicted decode-step ms of `profile` (this model's method, no ranks)."""
        if profile.num_layers != self.num_layers:
            raise UserError(f"the profile has {profile.num_layers} layers, the latency model {self.num_layers}")
        if set(profile.methods) != {self.method} or profile.ranks is not None:
            raise UserError(f"the latency model covers {self.method} without ranks; the profile is "
                            f"{profile.method}{' with ranks' if profile.ranks else ''}")
        return self.rest_ms + sum(self.layer_time(i, a) for i, a in enumerate(profile.levels))

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
                   rest_spread_ms=tuple(data.get("rest_spread_ms", (0.0, 0.0))), info=dict(data.get("info", {})))


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


@torch.inference_mode()
def _time_layers(handle: SparsifiedModel, inputs: list[list[torch.Tensor]], levels: Sequence[Optional[float]],
                 method: str, repeats: int, tick: Callable[[], None]) -> dict[Optional[float], list[float]]:
    """Median ms per call of every layer at every level; levels in rotating order, every round."""
    calls: dict[Optional[float], list[list[float]]] = {a: [[] for _ in handle.layers] for a in levels}
    n_tok = min(len(xs) for xs in inputs)
    for r in range(repeats):
        order = list(levels[r % len(levels):]) + list(levels[:r % len(levels)])
        for level in order:
            if level is None:
                handle.configure(enabled=False)
            else:
                handle.set_profile(Profile.uniform(len(handle.layers), level, method=method))
                handle.configure(enabled=True, predict=True, **VARIANTS[MAIN_VARIANT])
            for j in range(n_tok):
                for i, layer in enumerate(handle.layers):  # model order: the previous call was another layer's
                    t0 = time.perf_counter()
                    layer(inputs[i][j])
                    calls[level][i].append((time.perf_counter() - t0) * 1e3)
            tick()
    return {a: [statistics.median(c) for c in per_layer] for a, per_layer in calls.items()}


def build_latency_model(handle: SparsifiedModel, workload: Workload, grid: Sequence[float], *, method: str,
                        repeats: int = 3, tokens: int = 8, info: Optional[dict[str, Any]] = None,
                        progress: Optional[Callable[[int], None]] = None) -> LatencyModel:
    """Measure the latency model of `handle` (its method `method`) over the level `grid`."""
    grid = tuple(sorted(float(a) for a in grid))
    if len(grid) < 2:
        raise UserError("the latency model needs at least two grid levels")
    tick = (lambda: progress(1)) if progress is not None else (lambda: None)
    with handle.restoring(collect=False):
        inputs = _record_inputs(handle, workload, tokens)
        per_level = _time_layers(handle, inputs, [None, *grid], method, repeats, tick)
        uniform = {f"uniform-{a:g}": Profile.uniform(len(handle.layers), a, method=method) for a in grid}
        steps = measure_profiles(handle, workload, uniform, repeats=repeats, progress=progress)
    dense_ms = steps[DENSE]["ms"]
    rests = [steps[name]["ratio"] * dense_ms - sum(per_level[a]) for name, a in zip(uniform, grid)]
    return LatencyModel(method=method, grid=grid, layer_ms=tuple(zip(*(per_level[a] for a in grid))),
                        dense_layer_ms=tuple(per_level[None]), rest_ms=statistics.median(rests),
                        dense_step_ms=dense_ms, rest_spread_ms=(min(rests), max(rests)),
                        info={**(info or {}), "repeats": repeats, "tokens": tokens,
                              "uniform_ratios": {n: steps[n]["ratio"] for n in uniform}})


def runs_needed(grid: int, prompts: int, repeats: int) -> int:
    """Progress ticks of build_latency_model: the per-layer rounds, then measure_profiles' runs."""
    return repeats * (grid + 1) + profile_runs(grid, prompts, repeats)
