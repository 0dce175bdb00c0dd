"""Per-layer predictor statistics during real decoding (the paper's Fig. 3).

An observer on each SparseMLP sees every decode input x. It computes the ideal mask (rows whose
activation is exactly 0, from a dense float32 gate product) and, for each alpha of interest, the
sign predictor's mask (the layer's backend), and counts both in a `LayerCounts` per (layer, alpha).
This is analysis only: it does the dense work the kernels avoid, so it never runs while latency is
measured.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from sparseinfer_dse.engine.layer_stats import LayerCounts
from sparseinfer_dse.engine.sparse_mlp import SparseMLP
from sparseinfer_dse.engine.sparsify import SparsifiedModel


class PredictorAnalysis:
    """Attach to a SparsifiedModel, decode, then read `rows()`; `detach()` when done."""

    def __init__(self, handle: SparsifiedModel, alphas: Sequence[float]) -> None:
        self.handle = handle
        self.alphas = [float(a) for a in alphas]
        self.counts = {layer.index: {a: LayerCounts(layer.k) for a in self.alphas} for layer in handle.layers}
        self._weights = {}
        for layer in handle.layers:
            layer.observer = self._observe
            self._weights[layer.index] = layer.original.gate_proj.weight

    def detach(self) -> None:
        for layer in self.handle.layers:
            layer.observer = None

    @torch.no_grad()
    def _observe(self, layer: SparseMLP, x: torch.Tensor, result: Any) -> None:
        g = x.float() @ self._weights[layer.index].float().t()
        ideal = torch.where(g >= layer.threshold, g, torch.zeros_like(g)) == 0
        for a, counts in self.counts[layer.index].items():
            counts.observe(ideal, layer.backend.predict(layer.prep, x, a))

    def rows(self) -> list[dict[str, Any]]:
        """One row per (layer, alpha): ideal/predicted sparsity, precision, recall, AS gained, skipped."""
        out = []
        for idx, by_alpha in sorted(self.counts.items()):
            profile_alpha = self.handle.layers[idx].alpha if self.handle.options.predict else None
            for a, counts in by_alpha.items():
                f = counts.fractions()
                out.append({
                    "layer": idx,
                    "alpha": a,
                    "tokens": f["tokens"],
                    "ideal_sparsity": f["relu_sparsity"],
                    "predicted_sparsity": f["predicted_sparsity"],
                    "precision": f["precision"],
                    "recall": f["recall"],
                    "as_gained": f["as_gained"],
                    "skipped": f["skipped"],
                    "profile_alpha": profile_alpha,
                })
        return out
