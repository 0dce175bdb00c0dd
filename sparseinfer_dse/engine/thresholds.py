"""Calibrated thresholds: from a method's score distribution on calibration text to the threshold
that zeroes a target fraction of each projection's inputs, per layer.

`capture_mlp_inputs` records every decoder MLP's input on the dense model (teacher-forced text,
all positions, as TEAL and WiSparse calibrate); `build_table` turns them into a `ThresholdTable`:
per layer and projection the scores' quantiles on a 1% grid, and for `wisparse` the split of a
layer's target between gate, up and down that keeps the block's output error lowest (a greedy walk
in 5% steps: each step raises the projection whose increase adds the least relative error on the
calibration inputs, as TEAL's block-wise greedy does; WiSparse refines its per-block budget inside
the block the same way). Scores:

- cats "act": |act(gate x)|;
- teal "gate"/"up": |x|, "down": |h| with h = act(gate x) * up x;
- wisparse and rsparse: the teal scores times the column norm ||W[:, j]||_2 of the projection's
  weight (R-Sparse's per-channel `scale`, the row norms of V diag(S), is the same number); rsparse
  gives each projection the layer's target (no split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

from sparseinfer_dse.engine.methods import SPARSITY_MAX, ProfileError, get_method
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.models.discovery import GatedMLP

GRID = np.round(np.arange(0.0, SPARSITY_MAX + 1e-9, 0.01), 2)  # target sparsities with a stored quantile
GREEDY_STEP = 0.05
WEIGHTED = ("wisparse", "rsparse")  # methods whose channel scores are scaled by the weights' column norms
GREEDY_TOKENS = 256  # calibration positions per layer the greedy split is judged on


def column_norms(weight: torch.Tensor) -> torch.Tensor:
    """||W[:, j]||_2 for each input channel j of an nn.Linear weight (out, in), float32."""
    return weight.detach().float().norm(dim=0)


@torch.no_grad()
def capture_mlp_inputs(model: torch.nn.Module, mlps: Sequence[GatedMLP], batches: Iterable[torch.Tensor],
                       max_tokens: int, seed: int = 0, progress: Optional[Callable[[int], None]] = None
                       ) -> list[torch.Tensor]:
    """Every MLP's inputs (float32 (N, d) per layer, N <= max_tokens, the same positions in every
    layer) from forward passes of the dense model over `batches` of token ids (1, T)."""
    store: list[list[torch.Tensor]] = [[] for _ in mlps]
    hooks = [m.module.register_forward_pre_hook(lambda mod, args, i=i: store[i].append(
        args[0].detach().reshape(-1, args[0].shape[-1]).float().cpu())) for i, m in enumerate(mlps)]
    try:
        for ids in batches:
            model(input_ids=ids.to(mlps[0].gate.weight.device))
            if progress is not None:
                progress(1)
    finally:
        for h in hooks:
            h.remove()
    xs = [torch.cat(s) for s in store]
    n = xs[0].shape[0]
    if n > max_tokens:
        keep = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, max_tokens, replace=False)))
        xs = [x[keep] for x in xs]
    return xs


class _LayerMath:
    """One layer's scores and its MLP with given per-projection thresholds, in float32 on the CPU."""

    def __init__(self, mlp: GatedMLP, method: str) -> None:
        self.act = mlp.module.act_fn
        self.wg, self.wu, self.wd = (w.weight.detach().float().cpu() for w in (mlp.gate, mlp.up, mlp.down))
        ones = lambda w: torch.ones(w.shape[1])  # noqa: E731
        if method in WEIGHTED:
            self.scale = {"gate": column_norms(self.wg), "up": column_norms(self.wu), "down": column_norms(self.wd)}
        else:
            self.scale = {"gate": ones(self.wg), "up": ones(self.wu), "down": ones(self.wd)}

    def scores(self, x: torch.Tensor, method: str) -> dict[str, torch.Tensor]:
        g = x @ self.wg.t()
        a = self.act(g)
        if method == "cats":
            return {"act": a.abs()}
        h = a * (x @ self.wu.t())
        return {"gate": x.abs() * self.scale["gate"], "up": x.abs() * self.scale["up"],
                "down": h.abs() * self.scale["down"]}

    def output(self, x: torch.Tensor, thr: Optional[dict[str, float]] = None) -> torch.Tensor:
        if thr is None:
            return (self.act(x @ self.wg.t()) * (x @ self.wu.t())) @ self.wd.t()
        keep = lambda v, p: v * ((v.abs() * self.scale[p]) > thr[p])  # noqa: E731
        h = self.act(keep(x, "gate") @ self.wg.t()) * (keep(x, "up") @ self.wu.t())
        return keep(h, "down") @ self.wd.t()


def _quantiles(v: torch.Tensor) -> np.ndarray:
    flat = v.reshape(-1).numpy()
    if flat.size > 4_000_000:  # quantiles of 4M values are as good as of all of them at a 1% grid
        flat = flat[np.random.default_rng(0).choice(flat.size, 4_000_000, replace=False)]
    return np.quantile(flat, GRID).astype(np.float64)


def _greedy_split(layer: _LayerMath, x: torch.Tensor, q: dict[str, np.ndarray]) -> np.ndarray:
    """(len(GRID), 3) per-projection sparsities (gate, up, down) for each layer-level target."""
    projs = ("gate", "up", "down")
    y = layer.output(x)
    norm = float((y * y).sum()) or 1.0
    cur = {p: 0.0 for p in projs}
    path = [(0.0, (0.0, 0.0, 0.0))]
    top = float(GRID[-1])

    def thr_of(levels):
        return {p: float(np.interp(levels[p], GRID, q[p])) for p in projs}

    while any(cur[p] < top - 1e-9 for p in projs):
        best = None
        for p in projs:
            if cur[p] >= top - 1e-9:
                continue
            trial = dict(cur, **{p: min(top, round(cur[p] + GREEDY_STEP, 4))})
            d = layer.output(x, thr_of(trial)) - y
            err = float((d * d).sum()) / norm
            if best is None or err < best[0]:
                best = (err, trial)
        cur = best[1]
        path.append((float(np.mean([cur[p] for p in projs])), tuple(cur[p] for p in projs)))
    means = np.array([m for m, _ in path])
    splits = np.array([s for _, s in path])
    return np.stack([np.interp(GRID, means, splits[:, j]) for j in range(3)], axis=1)


@dataclass
class ThresholdTable:
    """One method's calibration for one model: quantiles (L, P, len(GRID)) of each projection's
    scores, and for wisparse the per-layer split (L, len(GRID), P) of a layer target over P."""

    method: str
    calibration: dict[str, Any]  # what it was computed from (model, text, tokens)
    quantiles: np.ndarray
    splits: Optional[np.ndarray] = None

    @property
    def projections(self) -> tuple[str, ...]:
        return get_method(self.method).projections

    @property
    def num_layers(self) -> int:
        return int(self.quantiles.shape[0])

    def projection_levels(self, layer: int, level: float) -> dict[str, float]:
        """The target sparsity of each projection for a layer-level target."""
        if self.splits is None:
            return {p: level for p in self.projections}
        return {p: float(np.interp(level, GRID, self.splits[layer, :, j])) for j, p in enumerate(self.projections)}

    def thresholds(self, layer: int, level: float) -> dict[str, float]:
        """The thresholds that zero `level` of the layer's inputs (as calibrated)."""
        lv = self.projection_levels(layer, level)
        return {p: max(0.0, float(np.interp(lv[p], GRID, self.quantiles[layer, j])))
                for j, p in enumerate(self.projections)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"quantiles": self.quantiles}
        if self.splits is not None:
            out["splits"] = self.splits
        return out


@torch.no_grad()
def build_table(method: str, mlps: Sequence[GatedMLP], inputs: Sequence[torch.Tensor], calibration: dict[str, Any],
                progress: Optional[Callable[[int], None]] = None) -> ThresholdTable:
    """The method's ThresholdTable from the captured MLP inputs (one (N, d) tensor per layer)."""
    spec = get_method(method)
    if not spec.calibrated:
        raise ValueError(f"method {method} takes no calibrated thresholds")
    quants, splits = [], []
    for mlp, x in zip(mlps, inputs):
        layer = _LayerMath(mlp, method)
        sc = layer.scores(x, method)
        q = {p: _quantiles(sc[p]) for p in spec.projections}
        quants.append(np.stack([q[p] for p in spec.projections]))
        if method == "wisparse":
            splits.append(_greedy_split(layer, x[:GREEDY_TOKENS], q))
        if progress is not None:
            progress(1)
    return ThresholdTable(method, dict(calibration), np.stack(quants), np.stack(splits) if splits else None)


def resolve_thresholds(profile: Profile, tables: Mapping[str, ThresholdTable]) -> Profile:
    """`profile` with every calibrated layer's thresholds filled in from `tables` (by method); the
    profile's own thresholds win. A calibrated layer with neither is a ProfileError."""
    out, calibration = [], profile.calibration
    for i, (m, level) in enumerate(zip(profile.methods, profile.levels)):
        own = profile.thresholds[i] if profile.thresholds is not None else None
        if level is None or not get_method(m).calibrated or own is not None:
            out.append(own)
            continue
        table = tables.get(m)
        if table is None:
            raise ProfileError(f"the profile's {m} layers carry no thresholds and no {m} calibration is loaded "
                               f"(run `sparseinfer-dse calibrate --method {m}` or pass one)")
        out.append(table.thresholds(i, level))
        calibration = table.calibration
    return profile.with_thresholds(out, calibration) if any(t is not None for t in out) else profile
