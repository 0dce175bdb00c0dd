"""The input-channel-sparse linear (TEAL / WiSparse): contract, argument checks, torch reference.

``y[b] = sum over kept j of x[b, j] * W^T[j]`` where channel ``j`` of row ``b`` is kept iff
``|x[b, j]| * scale[j] > threshold`` (float32; no scale means 1). Skipping a channel skips a whole
row of ``W^T``, so the bytes a call reads scale with the kept fraction: that is why the weight is
held transposed, ``w_t`` (n_in, n_out), one contiguous row per input channel. Accumulation is
float32 and the result comes back in x's dtype. The reference below defines the expected results.

R-Sparse adds a low-rank remainder for the channels a product skips: with ``W ~ U_r diag(S_r) V_r^T``
held as two linears, ``a = diag(S_r) V_r^T`` (r, n_in) and ``u = U_r`` (n_out, r) (``LowRank``),
``y += u @ (a @ (x * ~keep))``. The skipped channels' rows of ``a^T`` are read (r values each) and
all of ``u``, so the remainder costs ``(skipped + n_out) * r`` weights instead of ``skipped * n_out``.

Kept free of ``interface.py`` (which imports this module for the ``Backend`` protocol), so the
weight dtypes every kernel takes are defined here and re-exported there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np
import torch

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class PreparedLinear:
    """One nn.Linear weight in the layout the channel-sparse kernels read (built once at load time)."""

    backend: str
    n_in: int
    n_out: int
    dtype: torch.dtype
    device: torch.device
    extra_bytes: int  # bytes of w_t, the copy made here (the engine may then drop the original)
    state: dict[str, Any] = field(default_factory=dict, repr=False)  # "w_t": (n_in, n_out) contiguous

    def dense_weight(self) -> torch.Tensor:
        """(n_out, n_in) view of w_t for the dense path (prefill): no second copy of the weight."""
        return self.state["w_t"].t()


@dataclass
class LowRank:
    """The rank-r remainder of one projection: ``a`` = diag(S_r) V_r^T and ``u`` = U_r, each prepared
    as a linear (a.w_t is (n_in, r), one row of r values per input channel; u.w_t is (r, n_out))."""

    a: PreparedLinear
    u: PreparedLinear

    @property
    def rank(self) -> int:
        return self.a.n_out

    @property
    def extra_bytes(self) -> int:
        return self.a.extra_bytes + self.u.extra_bytes


# Layouts kept whole when a is truncated: the CUDA linear kernel takes its column count from its
# output (B, rank), and a column slice would be a strided array the CUDA simulator cannot pass.
WHOLE_COLUMNS = ("cu_w_t",)


def truncate_lowrank(lr: LowRank, rank: int) -> LowRank:
    """The leading-`rank` part of a remainder (the best rank-`rank` approximation, as singular values
    come sorted) as views of lr's layouts, no copy: one layout at the largest rank serves every rank."""
    if not 1 <= rank <= lr.rank:
        raise ValueError(f"rank must be in [1, {lr.rank}], got {rank}")
    a = replace(lr.a, n_out=rank, extra_bytes=0,
                state={k: v if k in WHOLE_COLUMNS else v[:, :rank] for k, v in lr.a.state.items()})
    u = replace(lr.u, n_in=rank, extra_bytes=0, state={k: v[:rank] for k, v in lr.u.state.items()})
    return LowRank(a, u)


def prepare_lowrank_common(prepare_linear, a: torch.Tensor, u: torch.Tensor) -> LowRank:
    """A LowRank from a (r, n_in) and u (n_out, r), each laid out by the backend's prepare_linear."""
    for name, t in (("a", a), ("u", u)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be a 2-D torch tensor, got {_shape(t)}")
    if a.shape[0] != u.shape[1] or a.shape[0] < 1:
        raise ValueError(f"a (r, n_in) and u (n_out, r) disagree on r >= 1: a {tuple(a.shape)}, u {tuple(u.shape)}")
    return LowRank(prepare_linear(a), prepare_linear(u))


@dataclass
class ChannelResult:
    y: torch.Tensor  # (B, n_out), x's dtype and device
    kept: Optional[np.ndarray] = None  # (B,) int64 input channels kept per row, when with_counts


def prepare_linear_common(backend: str, w: torch.Tensor) -> PreparedLinear:
    """Check an nn.Linear weight (n_out, n_in) and make its transposed copy w_t on w's device."""
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError(f"w must be a 2-D torch tensor (n_out, n_in), got {_shape(w)}")
    if w.dtype not in DTYPES:
        raise ValueError(f"w has dtype {w.dtype}; use float32, float16 or bfloat16")
    n_out, n_in = w.shape
    if n_out < 1 or n_in < 1:
        raise ValueError(f"w must have at least one row and one column, got {tuple(w.shape)}")
    w_t = w.t().contiguous()
    return PreparedLinear(backend=backend, n_in=n_in, n_out=n_out, dtype=w.dtype, device=w.device,
                          extra_bytes=w_t.numel() * w_t.element_size(), state={"w_t": w_t})


def check_channel_input(prep: PreparedLinear, x: torch.Tensor, threshold: float, scale: Optional[torch.Tensor],
                        backend: str) -> np.float32:
    """Validate channel_linear's arguments; returns the threshold as the float32 every kernel compares."""
    if not isinstance(prep, PreparedLinear):
        raise ValueError(f"prep must be a PreparedLinear from prepare_linear, got {type(prep).__name__}")
    if prep.backend != backend:
        raise ValueError(f"prep was made by backend {prep.backend!r}; {backend!r} needs its own prepare_linear")
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != prep.n_in or x.shape[0] < 1:
        raise ValueError(f"x must be a (B, {prep.n_in}) tensor with B >= 1, got {_shape(x)}")
    if x.dtype != prep.dtype:
        raise ValueError(f"x has dtype {x.dtype}, the weight {prep.dtype}")
    if x.device.type != prep.device.type:
        raise ValueError(f"x is on {x.device}, the weight on {prep.device}")
    return check_threshold_scale(prep, threshold, scale, x.device)


def check_threshold_scale(prep: PreparedLinear, threshold: float, scale: Optional[torch.Tensor],
                          device: torch.device) -> np.float32:
    """The threshold as the float32 every kernel compares, and the scale's type, shape and device."""
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    if not math.isfinite(thr):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if scale is not None and (not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32
                              or tuple(scale.shape) != (prep.n_in,) or scale.device != device):
        got = f"{_shape(scale)} {getattr(scale, 'dtype', '')} on {getattr(scale, 'device', '?')}"
        raise ValueError(f"scale must be a float32 ({prep.n_in},) tensor on {device}, got {got}")
    return np.float32(thr)


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def kept_mask(x: torch.Tensor, threshold: np.float32, scale: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, n_in) bool: |x| * scale > threshold, in float32 (the rule every backend applies)."""
    a = x.float().abs()
    if scale is not None:
        a = a * scale
    return a > float(threshold)  # a float32 value: the same comparison in float32 or float64


def channel_linear_reference(prep: PreparedLinear, x: torch.Tensor, *, threshold: float,
                             scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
    """Plain torch: gathers the w_t rows some batch row keeps, multiplies in float32."""
    thr = check_channel_input(prep, x, threshold, scale, "torch")
    keep = kept_mask(x, thr, scale)
    rows = keep.any(0).nonzero().squeeze(1)
    y = torch.zeros((x.shape[0], prep.n_out), dtype=torch.float32, device=x.device)
    if rows.numel():
        xs = torch.where(keep[:, rows], x.float()[:, rows], torch.zeros((), device=x.device))
        y = xs @ prep.state["w_t"][rows].float()
    kept = keep.sum(1).cpu().numpy().astype(np.int64) if with_counts else None
    return ChannelResult(y=y.to(x.dtype), kept=kept)


# ---- one MLP block of channel-sparse products (TEAL / WiSparse decode step) ---------------------

PROJECTIONS = ("gate", "up", "down")


def check_channel_mlp(preps, x: torch.Tensor, thresholds, scales, activation: str, backend: str, lowrank=None):
    """Validate channel_mlp's arguments once; returns the three float32 thresholds and the activation code."""
    if len(preps) != 3 or len(thresholds) != 3 or len(scales) != 3:
        raise ValueError("channel_mlp takes (gate, up, down) preps, thresholds and scales")
    g, u, d = preps
    if (g.n_in, g.n_out) != (u.n_in, u.n_out) or (d.n_in, d.n_out) != (g.n_out, g.n_in):
        raise ValueError(f"preps do not form a gated MLP: gate {g.n_in}->{g.n_out}, up {u.n_in}->{u.n_out}, "
                         f"down {d.n_in}->{d.n_out}")
    if activation not in MLP_ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, MLP_ACTIVATIONS))}, got {activation!r}")
    thr = [check_channel_input(p, x, t, s, backend) for p, t, s in zip(preps[:2], thresholds[:2], scales[:2])]
    if not isinstance(d, PreparedLinear) or d.backend != backend or d.dtype != g.dtype:
        raise ValueError(f"the down prep must come from {backend}'s prepare_linear, in {g.dtype} like gate and up")
    thr.append(check_threshold_scale(d, thresholds[2], scales[2], x.device))  # down's input is internal
    if lowrank is not None:
        if len(lowrank) != 3:
            raise ValueError("channel_mlp's lowrank is (gate, up, down), each a LowRank or None")
        for name, p, lr in zip(PROJECTIONS, preps, lowrank):
            if lr is None:
                continue
            if not isinstance(lr, LowRank) or lr.a.backend != backend or lr.u.backend != backend:
                raise ValueError(f"lowrank {name} must be a LowRank from {backend}'s prepare_lowrank")
            if (lr.a.n_in, lr.u.n_out, lr.u.n_in) != (p.n_in, p.n_out, lr.rank) or lr.a.dtype != p.dtype:
                raise ValueError(f"lowrank {name} is {lr.a.n_in}->{lr.rank}->{lr.u.n_out} in {lr.a.dtype}, the "
                                 f"projection {p.n_in}->{p.n_out} in {p.dtype}")
    return thr, MLP_ACTIVATIONS.index(activation)


MLP_ACTIVATIONS = ("silu", "relu")  # act(gate) of the block; codes 0 and 1 in the compiled kernels


def _reference_product(p: PreparedLinear, v: torch.Tensor, thr, scale, lr: Optional[LowRank]):
    """(y, keep) of one channel-sparse product of float32 v, plus its low-rank remainder if any."""
    keep = kept_mask(v, thr, scale)
    zero = torch.zeros((), device=v.device)
    y = torch.where(keep, v, zero) @ p.state["w_t"].float()
    if lr is not None:
        y = y + (torch.where(keep, zero, v) @ lr.a.state["w_t"].float()) @ lr.u.state["w_t"].float()
    return y, keep


def channel_mlp_reference(preps, x: torch.Tensor, *, thresholds, scales=(None, None, None), activation: str = "silu",
                          lowrank=None, with_counts: bool = False) -> ChannelResult:
    """down(act(gate(x)) * up(x)) with each product channel-sparse (and with `lowrank`, the skipped
    channels through each projection's LowRank); the intermediate stays float32 (the down product's
    input and its threshold compare are float32). `kept` sums the three products' kept channels."""
    thr, code = check_channel_mlp(preps, x, thresholds, scales, activation, "torch", lowrank)
    lrs = lowrank or (None, None, None)
    outs, kept = [], np.zeros(x.shape[0], dtype=np.int64)
    for i in range(3):
        v = x.float() if i < 2 else (torch.nn.functional.silu(outs[0]) if code == 0 else torch.relu(outs[0])) * outs[1]
        y, keep = _reference_product(preps[i], v, thr[i], scales[i], lrs[i])
        kept += keep.sum(1).cpu().numpy().astype(np.int64)
        outs.append(y)
    return ChannelResult(y=outs[2].to(x.dtype), kept=kept if with_counts else None)
