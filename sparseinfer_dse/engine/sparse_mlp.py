"""SparseMLP: a drop-in replacement for one decoder layer's gated MLP, running the layer's method.

Prefill (more than one new token per sequence) runs the original module, dense, as in the papers.
Decode steps (one new token per sequence) run the layer's method through the kernels:

- `sparseinfer`: the sign-bit predictor with the layer's alpha, then the row-sparse MLP kernel;
- `cats`: the same kernel without prediction, SiLU activation, rows with |act(gate)| at or below
  the layer's threshold skip up and down;
- `teal` / `wisparse`: three input-channel-sparse products (gate and up skip the MLP input's small
  channels, down the intermediate's), each with its own threshold (and, for wisparse, the weight's
  column norms as channel scales), in one kernel call per layer (`channel_mlp`);
- `rsparse`: wisparse's call, plus for each projection the rank-r remainder of the channels it
  skips (`lowrank.py`; the factors come from the handle's cached SVD, else are computed here).

A layer whose level is None runs dense. Weights are laid out for a method the first time a layer
needs it (`ensure_prepared`). The channel methods need W^T of each projection; by default it is a
copy next to the model's weights, because torch's dense matmul on a transposed view runs 1.2-2.4x
slower at batch 1 on CPUs (measured: 4096x11008 bfloat16 7.8 -> 18.4 ms), which would slow the dense
prefill and the dense reference every speedup is measured against. `share_weights` drops the
copy (the nn.Linear then holds a view of W^T) for deployments short of memory. Per-layer counters are accumulated only when asked for (they cost a host
copy per call on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from sparseinfer_dse.engine import mlp_op
from sparseinfer_dse.engine.layer_stats import LayerCounts
from sparseinfer_dse.engine.lowrank import PROJECTIONS, LowRankFactors, svd_factors
from sparseinfer_dse.engine.methods import get_method
from sparseinfer_dse.engine.thresholds import WEIGHTED, column_norms
from sparseinfer_dse.models.discovery import GatedMLP
from sparseinfer_kernels.api import truncate_lowrank

CHANNEL_METHODS = ("teal", "wisparse", "rsparse")


@dataclass
class EngineOptions:
    """Switches shared by every layer of one sparsified model (the paper's ablations and modes)."""

    fused: bool = True  # fused gate+up kernel (kernel fusion ablation)
    actual_sparsity: bool = True  # skip up/down for rows that came out exactly zero (AS ablation)
    predict: bool = True  # False: no prediction at all, every gate row computed (exactness checks)
    enabled: bool = True  # False: every layer runs its original module (the dense reference)
    collect: bool = False  # accumulate per-layer counters on every decode call
    share_weights: bool = False  # channel methods: the model's nn.Linear reads a view of W^T (no copy)


@dataclass
class LayerStats:
    """One layer's calls by kind, and its kernel counters over the decode calls (when collected).
    For the channel methods the counted "rows" are the input channels of gate, up and down together
    (2d + k per token): `gained` the skipped ones, `computed` the kept ones."""

    counts: LayerCounts
    calls: dict[str, int] = field(default_factory=lambda: {"prefill": 0, "decode_dense": 0, "decode_sparse": 0})


class SparseMLP(nn.Module):
    def __init__(self, mlp: GatedMLP, backend: Any, threshold: float, decode_relu: bool,
                 options: EngineOptions) -> None:
        super().__init__()
        self.original = mlp.module
        self.mlp = mlp
        self.index = mlp.index
        self.backend = backend
        self.threshold = threshold  # the model's own FATReLU threshold (sparseinfer)
        self.decode_relu = decode_relu
        self.options = options
        self.method = "sparseinfer"
        self.alpha: Optional[float] = None  # the layer's level: alpha, or a target sparsity
        self.thresholds: dict[str, float] = {}
        self._prep: Any = None  # row-sparse MLP layout (sparseinfer, cats)
        self._channels: Optional[dict[str, Any]] = None  # channel layouts and scales (teal, wisparse, rsparse)
        self.rank = 0  # rsparse: the low-rank remainder's rank (0 = none)
        self.factors: Optional[LowRankFactors] = None  # the model's cached SVD factors (set by the handle)
        self._lowrank: dict[Any, tuple[Any, Any, Any]] = {}  # "full" -> the layout; rank -> views of it
        self.stats = LayerStats(LayerCounts(self.count_rows))
        self.observer: Optional[Callable[["SparseMLP", torch.Tensor, Any], None]] = None
        self.slot = mlp_op.register(self)  # how a compiled decode step reaches this layer (mlp_op.py)

    @property
    def k(self) -> int:
        return self.mlp.k

    @property
    def count_rows(self) -> int:
        """What the layer's counters count per token: k rows, or 2d + k input channels (channel methods)."""
        return 2 * self.mlp.d + self.k if self.method in CHANNEL_METHODS else self.k

    @property
    def prep(self) -> Any:
        """The row-sparse MLP layout (sign words, W_down^T), made on first use."""
        if self._prep is None:
            m = self.mlp
            with torch.no_grad():
                self._prep = self.backend.prepare(m.gate.weight.detach().contiguous(), m.up.weight.detach().contiguous(),
                                                  m.down.weight.detach().contiguous())
        return self._prep

    @property
    def extra_bytes(self) -> int:
        """Bytes held beyond the model's own weights (the channel layouts replace them)."""
        out = self._prep.extra_bytes if self._prep is not None else 0
        if self._channels is not None:
            out += sum(int(n.numel()) * 4 for n in self._channels["norms"].values())
            if not self._channels["shared"]:
                out += sum(p.extra_bytes for p in self._channels["prep"].values())
        out += sum(lr.extra_bytes for lr in self._lowrank.get("full", ()))
        return out

    def ensure_prepared(self, method: str) -> None:
        if method in CHANNEL_METHODS:
            self._channel_layouts()
        elif method in ("sparseinfer", "cats"):
            self.prep  # noqa: B018

    def _channel_layouts(self) -> dict[str, Any]:
        """W^T (in, out) for gate, up and down (with `share_weights` each nn.Linear then holds a view of it)."""
        if self._channels is None:
            m, preps, share = self.mlp, {}, self.options.share_weights
            with torch.no_grad():
                for name, lin in (("gate", m.gate), ("up", m.up), ("down", m.down)):
                    preps[name] = self.backend.prepare_linear(lin.weight.detach())
                    if share:
                        lin.weight = nn.Parameter(preps[name].dense_weight(), requires_grad=False)
                norms = {n: column_norms(l.weight).to(l.weight.device) for n, l in
                         (("gate", m.gate), ("up", m.up), ("down", m.down))}
            self._channels = {"prep": preps, "norms": norms, "scale": {}, "shared": share,
                              "tuple": (preps["gate"], preps["up"], preps["down"])}
        return self._channels

    def lowrank(self, rank: int) -> tuple[Any, Any, Any]:
        """The gate, up and down remainders at `rank`: views of one layout at the largest rank laid
        out so far (the cached factors' max_rank, or `rank` if above it), so a search over many
        ranks holds one copy per layer."""
        if rank not in self._lowrank:
            full = self._lowrank.get("full")
            if full is None or full[0].rank < rank:
                if self.factors is not None and rank <= self.factors.max_rank:
                    f = self.factors.at(self.index, self.factors.max_rank)
                else:
                    m = self.mlp
                    f = {p: svd_factors(lin.weight, rank) for p, lin in zip(PROJECTIONS, (m.gate, m.up, m.down))}
                w = self.mlp.gate.weight
                full = tuple(self.backend.prepare_lowrank(a.to(w.dtype).to(w.device), u.to(w.dtype).to(w.device))
                             for a, u in (f[p] for p in PROJECTIONS))
                self._lowrank = {"full": full}
            self._lowrank[rank] = tuple(truncate_lowrank(lr, rank) for lr in full)
        return self._lowrank[rank]

    def set_level(self, method: str, level: Optional[float], thresholds: Optional[dict[str, float]],
                  rank: int = 0) -> None:
        """Switch this layer to `method` at `level` (None = dense) with its resolved thresholds (and,
        for rsparse, the rank of its low-rank remainder)."""
        spec = get_method(method)
        if spec.calibrated and self.mlp.activation.kind not in ("silu", "relu", "fatrelu"):
            raise ValueError(f"{method} needs a SiLU or ReLU MLP; layer {self.index} has {self.mlp.activation.kind}")
        if level is not None and spec.calibrated and not thresholds:
            raise ValueError(f"layer {self.index}: {method} at {level} needs calibrated thresholds")
        if method != self.method and (method in CHANNEL_METHODS) != (self.method in CHANNEL_METHODS):
            self.method = method
            self.stats = LayerStats(LayerCounts(self.count_rows))
        if rank and not spec.ranked:
            raise ValueError(f"layer {self.index}: {method} takes no rank")
        if rank > min(self.mlp.d, self.k):
            raise ValueError(f"layer {self.index}: rank {rank} is above the projections' smaller side "
                             f"({min(self.mlp.d, self.k)})")
        self.method, self.alpha, self.thresholds = method, level, dict(thresholds or {})
        self.rank = rank if level is not None else 0
        if level is not None:
            self.ensure_prepared(method)
            if self.rank:
                self.lowrank(self.rank)
            if method in CHANNEL_METHODS:
                ch = self._channels
                ch["scale"] = ch["norms"] if method in WEIGHTED else {"gate": None, "up": None, "down": None}

    def _dense_decode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.decode_relu or self.method != "sparseinfer":
            return self.original(x)
        o = self.original  # decode-time ReLU on a SiLU/GELU model (explicit opt-in, sparseinfer only)
        return o.down_proj(torch.relu(o.gate_proj(x)) * o.up_proj(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            if not self.options.enabled:  # the dense reference: the original MLP, compiled with the rest
                return self.original(x)
            return torch.ops.sparseinfer_dse.mlp_step(x, self.slot)  # one opaque op; it calls eager_forward
        return self.eager_forward(x)

    def eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        opts = self.options
        if not opts.enabled:
            return self.original(x)
        if x.dim() != 3 or x.shape[1] != 1:
            self.stats.calls["prefill"] += 1
            return self.original(x)
        if self.alpha is None and (opts.predict or self.method != "sparseinfer"):
            self.stats.calls["decode_dense"] += 1
            return self._dense_decode(x)
        self.stats.calls["decode_sparse"] += 1
        x2 = x.reshape(x.shape[0], x.shape[2])
        if self.method in CHANNEL_METHODS:
            return self._channel_decode(x2).view_as(x)
        want = opts.collect or self.observer is not None
        cats = self.method == "cats"
        res = self.backend.forward(
            self.prep, x2,
            alpha=self.alpha if (opts.predict and not cats) else None,
            threshold=self.thresholds["act"] if cats else self.threshold,
            actual_sparsity=opts.actual_sparsity,
            fused=opts.fused,
            with_counters=want,
            return_mask=self.observer is not None,
            activation="silu" if cats and self.mlp.activation.kind == "silu" else "relu",
        )
        if want:
            self.stats.counts.add_kernel(x2.shape[0], res.counters)
        if self.observer is not None:
            self.observer(self, x2, res)
        return res.y.view_as(x)

    def _channel_decode(self, x: torch.Tensor) -> torch.Tensor:
        ch, thr, want = self._channels, self.thresholds, self.options.collect
        res = self.backend.channel_mlp(
            ch["tuple"], x, thresholds=(thr["gate"], thr["up"], thr["down"]),
            scales=(ch["scale"]["gate"], ch["scale"]["up"], ch["scale"]["down"]),
            activation="silu" if self.mlp.activation.kind == "silu" else "relu",
            lowrank=self._lowrank[self.rank] if self.rank else None, with_counts=want)
        if want:
            c = self.stats.counts
            c.kernel = True
            c.tokens += x.shape[0]
            kept = int(res.kept.sum())
            c.computed += kept
            c.gained += x.shape[0] * (2 * self.mlp.d + self.k) - kept
        return res.y
