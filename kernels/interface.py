"""The kernel contract every backend implements: weight layouts, results, row flags, argument checks.

Kept apart from `api.py` (which picks a backend and imports it) so the backends import their
contract without importing the module that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from sparseinfer_kernels.channels import DTYPES, ChannelResult, LowRank, PreparedLinear

BACKENDS = ("torch", "numba-cpu", "numba-cuda")

# Row status flags (int8, one per input row and weight row) used by the kernels.
PRED = 1  # predicted sparse: nothing computed
ZERO = 2  # not predicted, activation exactly 0
COMP = 4  # W_up row and W_down^T row computed

# Activations forward() applies to g = W_gate[i] . x, as the int codes the compiled kernels take.
ACT_RELU = 0  # h1 = g if g >= threshold else 0 (ReLU; FATReLU for threshold > 0)
ACT_SILU = 1  # a = silu(g) in float32, h1 = a if |a| > threshold else 0 (CATS)
ACTIVATIONS = {"relu": ACT_RELU, "silu": ACT_SILU}


@dataclass(eq=False)
class Counters:
    """Per input row (shape (B,), int64): rows predicted sparse, rows not predicted whose activation
    was exactly 0, and rows whose up and down projections were computed."""

    predicted_sparse: np.ndarray
    actual_sparse: np.ndarray
    rows_computed: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counters):
            return NotImplemented
        return all(np.array_equal(getattr(self, f), getattr(other, f))
                   for f in ("predicted_sparse", "actual_sparse", "rows_computed"))

    def as_dict(self) -> dict[str, list[int]]:
        return {f: getattr(self, f).tolist() for f in ("predicted_sparse", "actual_sparse", "rows_computed")}

    @classmethod
    def from_status(cls, status: np.ndarray) -> "Counters":
        """Counters from a (B, k) int8 array of PRED/ZERO/COMP flags."""
        status = np.asarray(status)
        return cls(
            predicted_sparse=((status & PRED) != 0).sum(axis=1).astype(np.int64),
            actual_sparse=((status & ZERO) != 0).sum(axis=1).astype(np.int64),
            rows_computed=((status & COMP) != 0).sum(axis=1).astype(np.int64),
        )


@dataclass
class MLPResult:
    y: torch.Tensor  # (B, d), x's dtype and device
    counters: Optional[Counters] = None
    predicted_mask: Optional[torch.Tensor] = None  # (B, k) bool, True = predicted sparse


@dataclass
class PreparedMLP:
    """One MLP block's weights in the layouts a backend needs (built once at load time)."""

    backend: str
    d: int
    k: int
    dtype: torch.dtype
    device: torch.device
    extra_bytes: int  # bytes of the copies made at load: sign words + W_down^T
    state: dict[str, Any] = field(default_factory=dict, repr=False)


@runtime_checkable
class Backend(Protocol):
    name: str

    def prepare(self, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> PreparedMLP: ...

    def forward(
        self,
        prep: PreparedMLP,
        x: torch.Tensor,
        *,
        alpha: Optional[float],
        threshold: float = 0.0,
        actual_sparsity: bool = True,
        fused: bool = True,
        with_counters: bool = False,
        return_mask: bool = False,
        activation: str = "relu",
    ) -> MLPResult: ...

    def predict(self, prep: PreparedMLP, x: torch.Tensor, alpha: float) -> torch.Tensor: ...

    def predictor(self, prep: PreparedMLP, x: torch.Tensor, alpha: float) -> Callable[[], Any]:
        """A no-argument call that runs the predictor as forward() runs it (x packed, rows
        classified), with the arguments checked and converted once: what benchmarks time as
        "the predictor alone", without predict()'s per-call checks and result wrapping."""
        ...

    def prepare_linear(self, w: torch.Tensor) -> PreparedLinear:
        """An nn.Linear weight (n_out, n_in) in the channel-sparse layout (``channels.py``)."""
        ...

    def channel_linear(self, prep: PreparedLinear, x: torch.Tensor, *, threshold: float,
                       scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
        """x @ W^T over the input channels with |x| * scale > threshold only (``channels.py``)."""
        ...

    def prepare_lowrank(self, a: torch.Tensor, u: torch.Tensor) -> LowRank:
        """A projection's rank-r remainder, a = diag(S_r) V_r^T (r, n_in) and u = U_r (n_out, r)."""
        ...

    def channel_mlp(self, preps, x: torch.Tensor, *, thresholds, scales=(None, None, None), activation: str = "silu",
                    lowrank=None, with_counts: bool = False) -> ChannelResult:
        """One decode step of a channel-sparse gated MLP (TEAL / WiSparse; R-Sparse with `lowrank`)."""
        ...


# ---- checks shared by the backends -------------------------------------------------------------


def check_weights(w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> tuple[int, int]:
    """Validate shapes/dtypes/devices of one MLP's weights; returns (d, k)."""
    for name, w in (("w_gate", w_gate), ("w_up", w_up), ("w_down", w_down)):
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"{name} must be a 2-D torch tensor")
        if w.dtype not in DTYPES:
            raise ValueError(f"{name} has dtype {w.dtype}; use float32, float16 or bfloat16")
    k, d = w_gate.shape
    if tuple(w_up.shape) != (k, d):
        raise ValueError(f"w_up has shape {tuple(w_up.shape)}, expected {(k, d)} like w_gate")
    if tuple(w_down.shape) != (d, k):
        raise ValueError(f"w_down has shape {tuple(w_down.shape)}, expected {(d, k)} (nn.Linear layout)")
    if not (w_gate.dtype == w_up.dtype == w_down.dtype):
        raise ValueError("w_gate, w_up and w_down must have the same dtype")
    if not (w_gate.device == w_up.device == w_down.device):
        raise ValueError("w_gate, w_up and w_down must be on the same device")
    return d, k


def activation_code(activation: str) -> int:
    """The kernels' int code of a forward() activation name (ValueError naming the allowed ones)."""
    code = ACTIVATIONS.get(activation) if isinstance(activation, str) else None
    if code is None:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")
    return code


def check_input(prep: PreparedMLP, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != prep.d or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, {prep.d}) tensor with B >= 1, got {shape}")
    if x.dtype != prep.dtype:
        raise ValueError(f"x has dtype {x.dtype}, the weights {prep.dtype}")
    if x.device.type != prep.device.type:
        raise ValueError(f"x is on {x.device}, the weights on {prep.device}")
