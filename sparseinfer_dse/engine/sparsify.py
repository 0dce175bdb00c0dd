"""`sparsify(model, profile, backend=...)`: swap every decoder MLP for a SparseInferMLP, undoably.

Weights are prepared once (sign bits of W_gate, W_down^T); a new profile is applied with
`set_profile` without preparing again, which is what a search does between trials.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from sparseinfer_dse.engine.layer_stats import LayerCounts
from sparseinfer_dse.engine.profile import AlphaProfile, ProfileError
from sparseinfer_dse.engine.sparse_mlp import EngineOptions, LayerStats, SparseInferMLP
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

    def __init__(self, model: nn.Module, layers: list[SparseInferMLP], originals: list[nn.Module],
                 backend: str, options: EngineOptions, notice: str) -> None:
        self.model = model
        self.layers = layers
        self._originals = originals
        self.backend = backend
        self.options = options
        self.notice = notice
        self.profile: Optional[AlphaProfile] = None

    @property
    def extra_bytes(self) -> int:
        """Memory of the copies made at load (sign words, W_down^T, backend layouts)."""
        return sum(layer.prep.extra_bytes for layer in self.layers)

    def set_profile(self, profile: Union[AlphaProfile, Sequence[Optional[float]]]) -> None:
        alphas = profile.alphas if isinstance(profile, AlphaProfile) else tuple(profile)
        if len(alphas) != len(self.layers):
            raise ProfileError(f"profile has {len(alphas)} alphas but the model has {len(self.layers)} decoder layers")
        if not isinstance(profile, AlphaProfile):
            profile = AlphaProfile(alphas)
        self.profile = profile
        for layer, a in zip(self.layers, profile.alphas):
            layer.alpha = a

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

    def reset_stats(self) -> None:
        for layer in self.layers:
            layer.stats = LayerStats(LayerCounts(layer.k))

    def layer_stats(self) -> list[dict[str, Any]]:
        """Per layer: alpha, decode tokens counted, predicted / actual / total sparsity fractions."""
        out = []
        for layer in self.layers:
            f = layer.stats.counts.fractions()
            out.append({
                "layer": layer.index,
                "alpha": layer.alpha,
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


def sparsify(target: Any, profile: Union[AlphaProfile, Sequence[Optional[float]], None] = None, backend: str = "auto",
             *, decode_activation: Optional[str] = None, fused: bool = True, actual_sparsity: bool = True,
             allow_model_mismatch: bool = False) -> SparsifiedModel:
    """Make every decoder MLP of `target` (a LoadedModel or a transformers model) a SparseInferMLP.

    `profile` gives one alpha per layer (None = dense layer); default uniform 1.00. SiLU/GELU models
    need `decode_activation="relu"` (it changes the model, so it is never implied).
    """
    identity = getattr(target, "identity", None)
    if identity is not None:  # a LoadedModel
        model, mlps = target.model, target.mlps
        decode_activation = decode_activation or target.spec.decode_activation
    else:
        model, mlps = target, discover_mlps(target)
    notice = ""
    for m in mlps:
        notice = require_applicable(m.activation, decode_activation)
    decode_relu = not mlps[0].activation.is_sparse
    device = mlps[0].gate.weight.device
    if device.type == "meta":
        raise UserError("the model was loaded without weights; load it with weights to sparsify")
    name = choose_backend(backend, device)
    be = get_backend(name)
    if profile is None:
        profile = AlphaProfile.uniform(len(mlps), 1.0, identity)
    if isinstance(profile, AlphaProfile) and identity is not None:
        profile.check_model(identity, allow_model_mismatch)
    options = EngineOptions(fused=fused, actual_sparsity=actual_sparsity)
    layers, originals = [], []
    with torch.no_grad():
        for m in mlps:
            prep = be.prepare(m.gate.weight.detach(), m.up.weight.detach(), m.down.weight.detach())
            threshold = m.activation.threshold if m.activation.kind == "fatrelu" else 0.0
            layers.append(SparseInferMLP(m.module, m.index, be, prep, None, threshold, decode_relu, options))
            originals.append(m.module)
    handle = SparsifiedModel(model, layers, originals, name, options, notice)
    handle.set_profile(profile)
    for layer_mod, wrapper in zip(decoder_layers(model), layers):
        layer_mod.mlp = wrapper
    return handle
