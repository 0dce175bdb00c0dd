"""`sparsify(model, profile, backend=...)`: swap every decoder MLP for a SparseMLP, undoably.

Weights are laid out once per method a layer runs (sign bits and W_down^T for sparseinfer and
cats, W^T of each projection for teal, wisparse and rsparse, and rsparse's low-rank remainders
at each rank used); a new profile is applied with `set_profile`
without preparing again, which is what a search does between trials. Calibrated methods resolve a
layer's target sparsity to thresholds through the handle's `ThresholdTable` unless the profile
carries its own; rsparse's SVD factors come from `add_factors` (a cache) or are computed per layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from sparseinfer_dse.engine.layer_stats import LayerCounts
from sparseinfer_dse.engine.lowrank import LowRankFactors
from sparseinfer_dse.engine.methods import SILU_METHODS, get_method
from sparseinfer_dse.engine.profile import Profile, ProfileError
from sparseinfer_dse.engine.sparse_mlp import EngineOptions, LayerStats, SparseMLP
from sparseinfer_dse.engine.thresholds import ThresholdTable, resolve_thresholds
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.models.applicability import require_applicable
from sparseinfer_dse.models.discovery import decoder_layers, discover_mlps
from sparseinfer_kernels.api import BACKENDS, available_backends, get_backend

BACKEND_CHOICES = ("auto", *BACKENDS)


def choose_backend(name: str, device: torch.device) -> str:
    """Resolve `auto` to the fastest backend that can run on `device`; refuse impossible pairs."""
    avail = available_backends()
    if name == "auto":
        if device.type == "cuda":
            return "numba-cuda" if "numba-cuda" in avail else "torch"
        return "numba-cpu"
    if name not in BACKEND_CHOICES:
        raise OptionError("backend", f"{{backend}} must be one of {', '.join(BACKEND_CHOICES)}, not {name!r}")
    if name not in avail:
        raise UserError(f"backend {name} cannot run here (available: {', '.join(avail)})")
    if name == "numba-cpu" and device.type != "cpu":
        raise OptionError("device", "backend numba-cpu needs the model on {device} cpu")
    if name == "numba-cuda" and device.type != "cuda":
        raise OptionError("device", "backend numba-cuda needs the model on {device} cuda")
    return name


class SparsifiedModel:
    """Handle on a sparsified model: change the profile or options, read stats, undo."""

    def __init__(self, model: nn.Module, layers: list[SparseMLP], originals: list[nn.Module],
                 backend: str, options: EngineOptions, notice: str, activation: Any = None) -> None:
        self.model = model
        self.layers = layers
        self._originals = originals
        self.backend = backend
        self.options = options
        self.notice = notice
        self.activation = activation
        self.profile: Optional[Profile] = None
        self.tables: dict[str, ThresholdTable] = {}

    @property
    def extra_bytes(self) -> int:
        """Memory of the copies made at load (sign words, W_down^T, backend layouts)."""
        return sum(layer.extra_bytes for layer in self.layers)

    def add_table(self, table: ThresholdTable) -> None:
        """Calibrated thresholds for `table.method` (what its target sparsities resolve through)."""
        if table.num_layers != len(self.layers):
            raise ProfileError(f"the {table.method} calibration has {table.num_layers} layers, the model {len(self.layers)}")
        self.tables[table.method] = table

    def add_factors(self, factors: LowRankFactors) -> None:
        """SVD factors of every layer (rsparse's remainders up to factors.max_rank come from them)."""
        if factors.num_layers != len(self.layers):
            raise ProfileError(f"the low-rank factors have {factors.num_layers} layers, the model {len(self.layers)}")
        for layer in self.layers:
            layer.factors = factors

    def resolve(self, profile: Profile) -> Profile:
        """`profile` with every calibrated layer's thresholds filled in (the profile's own win)."""
        if len(profile.levels) != len(self.layers):
            raise ProfileError(f"profile has {len(profile.levels)} layers but the model has {len(self.layers)} decoder layers")
        return resolve_thresholds(profile, self.tables)

    def set_profile(self, profile: Union[Profile, Sequence[Optional[float]]]) -> None:
        if not isinstance(profile, Profile):
            profile = Profile(tuple(profile))
        if "sparseinfer" in profile.methods and self.activation is not None and any(
                a is not None for a, m in zip(profile.levels, profile.methods) if m == "sparseinfer"):
            require_applicable(self.activation, "relu" if self.layers and self.layers[0].decode_relu else None)
        profile = self.resolve(profile)
        self.profile = profile
        thresholds = profile.thresholds or (None,) * len(self.layers)
        for i, (layer, m, a, t) in enumerate(zip(self.layers, profile.methods, profile.levels, thresholds)):
            layer.set_level(m, a, t, profile.rank_of(i))

    def configure(self, **switches: bool) -> None:
        """Set EngineOptions fields (fused, actual_sparsity, predict, enabled, collect) for all layers."""
        for key, value in switches.items():
            if not hasattr(self.options, key):
                raise ValueError(f"unknown engine option {key!r}")
            setattr(self.options, key, value)

    @contextmanager
    def options_set(self, **switches: bool) -> Iterator["SparsifiedModel"]:
        old = {k: getattr(self.options, k) for k in switches}
        self.configure(**switches)
        try:
            yield self
        finally:
            self.configure(**old)

    @contextmanager
    def restoring(self, **switches: bool) -> Iterator["SparsifiedModel"]:
        """Set `switches`, and on exit put back every option and the profile as they were (for
        measurements that switch profiles and variants as they go)."""
        profile, options = self.profile, dict(vars(self.options))
        self.configure(**switches)
        try:
            yield self
        finally:
            self.configure(**options)
            if profile is not None:
                self.set_profile(profile)

    def reset_stats(self) -> None:
        for layer in self.layers:
            layer.stats = LayerStats(LayerCounts(layer.count_rows))

    def layer_stats(self) -> list[dict[str, Any]]:
        """Per layer: method, level (alpha), rank, decode tokens counted, predicted / actual / total sparsity fractions."""
        out = []
        for layer in self.layers:
            f = layer.stats.counts.fractions()
            out.append({
                "layer": layer.index,
                "method": layer.method,
                "alpha": layer.alpha,
                "rank": layer.rank,
                "tokens": f["tokens"],
                "predicted_sparsity": f["predicted_sparsity"],
                "actual_sparsity": f.get("actual_sparsity", 0.0),
                "skipped": f.get("skipped", 0.0),
                "calls": dict(layer.stats.calls),
            })
        return out

    def undo(self) -> nn.Module:
        """Put the original MLP modules back; the model is exactly what it was."""
        for layer_mod, original in zip(decoder_layers(self.model), self._originals):
            layer_mod.mlp = original
        self.layers = []
        return self.model

    def __enter__(self) -> "SparsifiedModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.layers:
            self.undo()


def sparsify(target: Any, profile: Union[Profile, Sequence[Optional[float]], None] = None, backend: str = "auto",
             *, method: str = "sparseinfer", tables: Sequence[ThresholdTable] = (),
             factors: Optional[LowRankFactors] = None,
             decode_activation: Optional[str] = None, fused: bool = True, actual_sparsity: bool = True,
             share_weights: bool = False, allow_model_mismatch: bool = False) -> SparsifiedModel:
    """Make every decoder MLP of `target` (a LoadedModel or a transformers model) a SparseMLP.

    `profile` gives one level per layer (None = dense layer); default: uniform alpha 1.00 for
    sparseinfer, every layer dense for the other methods (`method`). Calibrated methods need
    `tables` (or thresholds in the profile); rsparse's ranks read `factors` (else each layer
    computes its SVD when first asked for a rank). SparseInfer on SiLU/GELU models needs
    `decode_activation="relu"` (it changes the model, so it is never implied). `share_weights`:
    the channel methods' W^T replaces the model's weights instead of sitting beside them (less
    memory, slower dense matmuls; see sparse_mlp.py).
    """
    identity = getattr(target, "identity", None)
    if identity is not None:  # a LoadedModel
        model, mlps = target.model, target.mlps
        decode_activation = decode_activation or target.spec.decode_activation
    else:
        model, mlps = target, discover_mlps(target)
    get_method(method)
    if profile is None:
        profile = (Profile.uniform(len(mlps), 1.0, identity) if method == "sparseinfer"
                   else Profile.dense(len(mlps), identity, method))
    if isinstance(profile, Profile) and identity is not None:
        profile.check_model(identity, allow_model_mismatch)
    methods = profile.methods if isinstance(profile, Profile) else ("sparseinfer",)
    notice = ""
    if "sparseinfer" in methods:
        for m in mlps:
            notice = require_applicable(m.activation, decode_activation)
    elif mlps[0].activation.is_sparse and set(methods) <= set(SILU_METHODS):
        notice = f"{mlps[0].activation.describe()} already gives exact zeros: sparseinfer is the method made for it"
    decode_relu = not mlps[0].activation.is_sparse and decode_activation == "relu"
    device = mlps[0].gate.weight.device
    if device.type == "meta":
        raise UserError("the model was loaded without weights; load it with weights to sparsify")
    name = choose_backend(backend, device)
    be = get_backend(name)
    options = EngineOptions(fused=fused, actual_sparsity=actual_sparsity, share_weights=share_weights)
    layers, originals = [], []
    for m in mlps:
        threshold = m.activation.threshold if m.activation.kind == "fatrelu" else 0.0
        layers.append(SparseMLP(m, be, threshold, decode_relu, options))
        originals.append(m.module)
    handle = SparsifiedModel(model, layers, originals, name, options, notice, mlps[0].activation)
    for table in tables:
        handle.add_table(table)
    if factors is not None:
        handle.add_factors(factors)
    handle.set_profile(profile)
    for layer_mod, wrapper in zip(decoder_layers(model), layers):
        layer_mod.mlp = wrapper
    return handle
