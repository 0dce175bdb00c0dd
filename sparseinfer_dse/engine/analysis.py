"""Per-layer predictor statistics during real decoding (the paper's Fig. 3).

An observer on each SparseInferMLP sees every decode input x. It computes the ideal mask (rows whose
activation is exactly 0, from a dense float32 gate product) and, for each alpha of interest, the
sign predictor's mask, and accumulates counts. This is analysis only: it does the dense work the
kernels avoid, so it never runs while latency is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from sparseinfer_dse.engine.sparse_mlp import SparseInferMLP
from sparseinfer_dse.engine.sparsify import SparsifiedModel


@dataclass
class AlphaCounts:
    predicted: int = 0
    true_positive: int = 0  # predicted sparse and actually zero


@dataclass
class LayerAnalysis:
    k: int
    tokens: int = 0
    ideal: int = 0  # rows whose activation is exactly zero
    by_alpha: dict[float, AlphaCounts] = field(default_factory=dict)
    profile_actual_gained: int = 0  # at the profile's alpha: rows not predicted that came out zero


def _ratio(a: int, b: int) -> Optional[float]:
    return a / b if b else None


class PredictorAnalysis:
    """Attach to a SparsifiedModel, decode, then read `rows()`; `detach()` when done."""

    def __init__(self, handle: SparsifiedModel, alphas: Sequence[float]) -> None:
        self.handle = handle
        self.alphas = [float(a) for a in alphas]
        self.layers = {layer.index: LayerAnalysis(layer.k) for layer in handle.layers}
        self._weights = {}
        for layer in handle.layers:
            layer.observer = self._observe
            self._weights[layer.index] = layer.original.gate_proj.weight

    def detach(self) -> None:
        for layer in self.handle.layers:
            layer.observer = None

    @torch.no_grad()
    def _observe(self, layer: SparseInferMLP, x: torch.Tensor, result: Any) -> None:
        acc = self.layers[layer.index]
        g = x.float() @ self._weights[layer.index].float().t()
        h1 = torch.where(g >= layer.threshold, g, torch.zeros_like(g))
        ideal = h1 == 0
        acc.tokens += x.shape[0]
        acc.ideal += int(ideal.sum())
        for a in self.alphas:
            pred = layer.backend.predict(layer.prep, x, a)
            c = acc.by_alpha.setdefault(a, AlphaCounts())
            c.predicted += int(pred.sum())
            c.true_positive += int((pred & ideal).sum())
        if result.counters is not None:
            acc.profile_actual_gained += int(result.counters.actual_sparse.sum())

    def rows(self) -> list[dict[str, Any]]:
        """One row per (layer, alpha): ideal/predicted sparsity, precision, recall, AS gained, skipped."""
        out = []
        for idx, acc in sorted(self.layers.items()):
            total = max(acc.tokens * acc.k, 1)
            profile_alpha = self.handle.layers[idx].alpha if self.handle.options.predict else None
            for a, c in acc.by_alpha.items():
                gained = acc.ideal - c.true_positive  # zero rows the predictor missed: AS catches them
                out.append({
                    "layer": idx,
                    "alpha": a,
                    "tokens": acc.tokens,
                    "ideal_sparsity": acc.ideal / total,
                    "predicted_sparsity": c.predicted / total,
                    "precision": _ratio(c.true_positive, c.predicted),
                    "recall": _ratio(c.true_positive, acc.ideal),
                    "as_gained": gained / total,
                    "skipped": (c.predicted + gained) / total,
                    "profile_alpha": profile_alpha,
                })
        return out
