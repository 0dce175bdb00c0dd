"""SparseInferMLP: a drop-in replacement for one decoder layer's gated MLP.

Prefill (more than one new token per sequence) runs the original module, dense, as in the paper.
Decode steps (one new token per sequence) run the SparseInfer kernels with the layer's alpha; a
layer whose alpha is None runs dense. Per-layer counters are accumulated only when asked for
(they cost a host copy per call on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from sparseinfer_dse.engine.layer_stats import LayerCounts


@dataclass
class EngineOptions:
    """Switches shared by every layer of one sparsified model (the paper's ablations and modes)."""

    fused: bool = True  # fused gate+up kernel (kernel fusion ablation)
    actual_sparsity: bool = True  # skip up/down for rows that came out exactly zero (AS ablation)
    predict: bool = True  # False: no prediction at all, every gate row computed (exactness checks)
    enabled: bool = True  # False: every layer runs its original module (the dense reference)
    collect: bool = False  # accumulate per-layer counters on every decode call


@dataclass
class LayerStats:
    """One layer's calls by kind, and its kernel counters over the decode calls (when collected)."""

    counts: LayerCounts
    calls: dict[str, int] = field(default_factory=lambda: {"prefill": 0, "decode_dense": 0, "decode_sparse": 0})


class SparseInferMLP(nn.Module):
    def __init__(self, original: nn.Module, index: int, backend: Any, prep: Any, alpha: Optional[float],
                 threshold: float, decode_relu: bool, options: EngineOptions) -> None:
        super().__init__()
        self.original = original
        self.index = index
        self.backend = backend
        self.prep = prep
        self.alpha = alpha
        self.threshold = threshold
        self.decode_relu = decode_relu
        self.options = options
        self.stats = LayerStats(LayerCounts(prep.k))
        self.observer: Optional[Callable[["SparseInferMLP", torch.Tensor, Any], None]] = None

    @property
    def k(self) -> int:
        return self.prep.k

    def _dense_decode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.decode_relu:
            return self.original(x)
        o = self.original  # decode-time ReLU on a SiLU/GELU model (explicit opt-in)
        return o.down_proj(torch.relu(o.gate_proj(x)) * o.up_proj(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        opts = self.options
        if not opts.enabled:
            return self.original(x)
        if x.dim() != 3 or x.shape[1] != 1:
            self.stats.calls["prefill"] += 1
            return self.original(x)
        if self.alpha is None and opts.predict:
            self.stats.calls["decode_dense"] += 1
            return self._dense_decode(x)
        self.stats.calls["decode_sparse"] += 1
        x2 = x.reshape(x.shape[0], x.shape[2])
        want = opts.collect or self.observer is not None
        res = self.backend.forward(
            self.prep, x2,
            alpha=self.alpha if opts.predict else None,
            threshold=self.threshold,
            actual_sparsity=opts.actual_sparsity,
            fused=opts.fused,
            with_counters=want,
            return_mask=self.observer is not None,
        )
        if want:
            self.stats.counts.add_kernel(x2.shape[0], res.counters)
        if self.observer is not None:
            self.observer(self, x2, res)
        return res.y.view_as(x)
