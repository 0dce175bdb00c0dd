"""The ``torch`` backend: a plain torch implementation that defines the expected results.

Runs on CPU or CUDA tensors. It reads only the rows some input row needs (gathers), upcasts them
to float32 and multiplies in float32, so it is a reference, not a fast path.
"""

from __future__ import annotations

from typing import Optional

import torch

from sparseinfer_kernels.channels import (ChannelResult, LowRank, PreparedLinear, channel_linear_reference,
                                         channel_mlp_reference, prepare_linear_common, prepare_lowrank_common)
from sparseinfer_kernels.interface import (
    ACT_SILU,
    COMP,
    PRED,
    ZERO,
    Counters,
    MLPResult,
    PreparedMLP,
    activation_code,
    check_input,
    check_weights,
)
from sparseinfer_kernels.signs import count_negative, nneg_threshold, pack_signs


def prepare_common(backend: str, w_gate, w_up, w_down) -> PreparedMLP:
    """Sign words + W_down^T on the weights' device (the copies every backend makes)."""
    d, k = check_weights(w_gate, w_up, w_down)
    signs = pack_signs(w_gate)
    w_down_t = w_down.t().contiguous()
    extra = signs.numel() * 4 + w_down_t.numel() * w_down_t.element_size()
    return PreparedMLP(
        backend=backend,
        d=d,
        k=k,
        dtype=w_gate.dtype,
        device=w_gate.device,
        extra_bytes=extra,
        state=dict(w_gate=w_gate.contiguous(), w_up=w_up.contiguous(), w_down_t=w_down_t, signs=signs),
    )


def silu_f32(g: torch.Tensor) -> torch.Tensor:
    """silu(g) = g * sigmoid(g) of a float32 tensor, in float32, in the form every backend uses:
    ``(g if g >= 0 else g * e) / (1 + e)`` with ``e = exp(-|g|)`` in (0, 1], which cannot overflow
    (a very negative g gives -0.0)."""
    e = torch.exp(-g.abs())
    return torch.where(g >= 0, g, g * e) / (1.0 + e)


def reference_status(prep: PreparedMLP, x: torch.Tensor, alpha: Optional[float], threshold: float,
                     actual_sparsity: bool, activation: str = "relu"):
    """(status int8 (B,k), h1 float32 (B,k), rows computed by any input row) — the row decisions."""
    act = activation_code(activation)
    st = prep.state
    B, k = x.shape[0], prep.k
    if alpha is None:
        pred = torch.zeros((B, k), dtype=torch.bool, device=x.device)
    else:
        pred = count_negative(st["signs"], pack_signs(x)) >= nneg_threshold(alpha, prep.d)
    xf = x.float()
    g = torch.zeros((B, k), dtype=torch.float32, device=x.device)
    rows = (~pred).any(0).nonzero().squeeze(1)
    if rows.numel():
        g[:, rows] = xf @ st["w_gate"][rows].float().t()
    thr = torch.tensor(threshold, dtype=torch.float32, device=x.device)
    if act == ACT_SILU:
        a = silu_f32(g)
        h1 = torch.where(a.abs() > thr, a, torch.zeros_like(a))
    else:
        h1 = torch.where(g >= thr, g, torch.zeros_like(g))
    h1[pred] = 0.0
    zero = (~pred) & (h1 == 0)
    computed = (~pred) & ~zero if actual_sparsity else ~pred
    status = pred.to(torch.int8) * PRED + zero.to(torch.int8) * ZERO + computed.to(torch.int8) * COMP
    return status, h1, computed


class TorchBackend:
    name = "torch"

    def prepare(self, w_gate, w_up, w_down) -> PreparedMLP:
        return prepare_common(self.name, w_gate, w_up, w_down)

    def predict(self, prep: PreparedMLP, x: torch.Tensor, alpha: float) -> torch.Tensor:
        return self.predictor(prep, x, alpha)()

    def predictor(self, prep: PreparedMLP, x: torch.Tensor, alpha: float):
        check_input(prep, x)
        signs, nmin = prep.state["signs"], nneg_threshold(alpha, prep.d)
        return lambda: count_negative(signs, pack_signs(x)) >= nmin

    def forward(self, prep: PreparedMLP, x: torch.Tensor, *, alpha: Optional[float], threshold: float = 0.0,
                actual_sparsity: bool = True, fused: bool = True, with_counters: bool = False,
                return_mask: bool = False, activation: str = "relu") -> MLPResult:
        check_input(prep, x)
        st = prep.state
        status, h1, computed = reference_status(prep, x, alpha, float(threshold), actual_sparsity, activation)
        xf = x.float()
        y = torch.zeros((x.shape[0], prep.d), dtype=torch.float32, device=x.device)
        rows = computed.any(0).nonzero().squeeze(1)
        if rows.numel():
            u = xf @ st["w_up"][rows].float().t()
            h3 = torch.where(computed[:, rows], h1[:, rows] * u, torch.zeros_like(u))
            y = h3 @ st["w_down_t"][rows].float()
        counters = Counters.from_status(status.cpu().numpy()) if with_counters else None
        mask = (status & PRED) != 0 if return_mask else None
        return MLPResult(y=y.to(x.dtype), counters=counters, predicted_mask=mask)

    def prepare_linear(self, w: torch.Tensor) -> PreparedLinear:
        return prepare_linear_common(self.name, w)

    def channel_linear(self, prep: PreparedLinear, x: torch.Tensor, *, threshold: float,
                       scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
        return channel_linear_reference(prep, x, threshold=threshold, scale=scale, with_counts=with_counts)

    def prepare_lowrank(self, a: torch.Tensor, u: torch.Tensor) -> LowRank:
        """A projection's rank-r remainder (a = diag(S_r) V_r^T, u = U_r) in this backend's layout."""
        return prepare_lowrank_common(self.prepare_linear, a, u)

    def channel_mlp(self, preps, x: torch.Tensor, *, thresholds, scales=(None, None, None), activation: str = "silu",
                    lowrank=None, with_counts: bool = False) -> ChannelResult:
        """The decode step of a channel-sparse MLP block (gate, up, act * up, down) in one call,
        with each projection's low-rank remainder where `lowrank` gives one (R-Sparse)."""
        return channel_mlp_reference(preps, x, thresholds=thresholds, scales=scales, activation=activation,
                                     lowrank=lowrank, with_counts=with_counts)
