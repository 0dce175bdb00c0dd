"""The ``numba-cuda`` backend: numba.cuda kernels over CUDA torch tensors (or the CUDA simulator).

Layout of the work (the paper's, Section IV-B):

* predictor, gate and up: one warp per weight row, 16 rows per block (block 32 x 16), grid
  (ceil(k/16), B); lanes stride the row (coalesced), partial sums meet in a shared-memory tree
  reduction. Shared memory and ``syncthreads`` (no ``shfl``/vote) so the same code runs in the
  Numba CUDA simulator; every thread of a block reaches every ``syncthreads`` (skipped rows only
  skip their loads).
* down: ``W_down^T`` (k, d) is cut into tiles of DOWN_ROWS rows x DOWN_COLS columns; a thread owns
  one column of a tile, walks the tile's computed rows (a skipped row is skipped by the whole block,
  no divergence), and adds its partial sum to ``y`` with one ``atomic.add``: DOWN_ROWS times fewer
  atomics than one warp per row, coalesced loads.

Half precision: float16 arrays are read as numba float16 and widened; bfloat16 comes in as int16
bits and is widened by a shift and a bitcast (``cuda_base.to_f32``). All accumulation is float32.
Kernels launch on torch's current stream.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from numba import cuda, float32, int32, uint32

from sparseinfer_kernels.channels import ChannelResult, LowRank, PreparedLinear, prepare_lowrank_common
from sparseinfer_kernels.channels_cuda import channel_linear_cuda, channel_mlp_cuda, prepare_linear_cuda
from sparseinfer_kernels.cuda_base import SIM, to_f32
from sparseinfer_kernels.cuda_base import current_stream as _stream
from sparseinfer_kernels.cuda_base import dev as _dev
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
)
from sparseinfer_kernels.reference import prepare_common
from sparseinfer_kernels.signs import nneg_threshold

WARP = 32
ROWS = 16  # weight rows (warps) per block in the row kernels
DOWN_COLS = 128  # columns (threads) per block in the down kernel
DOWN_ROWS = 128  # rows per block in the down kernel


# ---- shared-memory reductions (one row per warp) ------------------------------------------------

@cuda.jit(device=True, inline="always")
def _row_sum_f32(sh, ty, lane, v):
    # Every lane publishes its partial sum, then every lane adds the row's 32 values in the same
    # order (broadcast reads, identical totals). Two syncthreads: cheap on hardware, and the
    # simulator's cost grows with the number of syncthreads.
    sh[ty, lane] = v
    cuda.syncthreads()
    total = float32(0.0)
    for t in range(WARP):
        total += sh[ty, t]
    cuda.syncthreads()  # everyone has read the row before the buffer is reused
    return total


@cuda.jit(device=True, inline="always")
def _row_sum_i32(sh, ty, lane, v):
    # Every lane publishes its partial sum, then every lane adds the row's 32 values in the same
    # order (broadcast reads, identical totals). Two syncthreads: cheap on hardware, and the
    # simulator's cost grows with the number of syncthreads.
    sh[ty, lane] = v
    cuda.syncthreads()
    total = int32(0)
    for t in range(WARP):
        total += sh[ty, t]
    cuda.syncthreads()  # everyone has read the row before the buffer is reused
    return total


# ---- activation (the row's decision, made where g is known) ------------------------------------

@cuda.jit(device=True, inline="always")
def _activate(g, threshold, act):
    """h1 of one row's float32 gate value: ReLU/FATReLU ``g >= threshold`` (act 0) or CATS
    ``|silu(g)| > threshold`` with silu as reference.silu_f32 (e = exp(-|g|), no overflow)."""
    thr = float32(threshold)
    if act == ACT_SILU:
        e = float32(math.exp(-abs(g)))
        a = (g if g >= float32(0.0) else g * e) / (float32(1.0) + e)
        return a if abs(a) > thr else float32(0.0)
    return g if g >= thr else float32(0.0)


# ---- kernels (plain functions; jitted below, compiled to PTX by cuda_ptx.py) ---------------------

def pack_x_signs_py(x, sx):
    """sx[b, w] = sign bits of float32 x[b, 32w : 32w+32] (bit t = element 32w+t; pad bits 0)."""
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    b = cuda.blockIdx.y
    d = x.shape[1]
    if w < sx.shape[1]:
        word = uint32(0)
        for t in range(WARP):
            j = w * WARP + t
            if j < d:
                if math.copysign(float32(1.0), x[b, j]) < 0:
                    word |= uint32(1) << uint32(t)
        sx[b, w] = word


def predict_py(sw, sx, nneg_min, status):
    """status[b, row] = PRED iff popcount(sw[row] ^ sx[b]) >= nneg_min, else 0."""
    sh = cuda.shared.array((ROWS, WARP), int32)
    lane = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.x * ROWS + ty
    b = cuda.blockIdx.y
    k, nw = sw.shape
    n = int32(0)
    if row < k:
        for w in range(lane, nw, WARP):
            n += cuda.popc(sw[row, w] ^ sx[b, w])
    total = _row_sum_i32(sh, ty, lane, n)
    if row < k and lane == 0:
        status[b, row] = PRED if total >= nneg_min else 0


def gate_up_fused_py(w_gate, w_up, x, threshold, act, actual_sparsity, status, h3):
    """Gate, activation, actual sparsity and up for one row per warp; writes h3 and status."""
    sh = cuda.shared.array((ROWS, WARP), float32)
    lane = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.x * ROWS + ty
    b = cuda.blockIdx.y
    k, d = w_gate.shape
    st = PRED
    if row < k:
        st = status[b, row]
    active = (st & PRED) == 0
    acc = float32(0.0)
    if active:
        for j in range(lane, d, WARP):
            acc += to_f32(w_gate[row, j]) * x[b, j]
    g = _row_sum_f32(sh, ty, lane, acc)
    h1 = _activate(g, threshold, act)
    if active and h1 == 0:
        st = ZERO
        if actual_sparsity:
            active = False
    acc = float32(0.0)
    if active:
        for j in range(lane, d, WARP):
            acc += to_f32(w_up[row, j]) * x[b, j]
    u = _row_sum_f32(sh, ty, lane, acc)
    if row < k and lane == 0:
        if active:
            h3[b, row] = h1 * u
            status[b, row] = st | COMP
        else:
            h3[b, row] = 0.0
            status[b, row] = st


def gate_py(w_gate, x, threshold, act, status, h1):
    """Non-fused step 1: h1 = act(W_gate . x) for rows not predicted sparse (marks ZERO rows)."""
    sh = cuda.shared.array((ROWS, WARP), float32)
    lane = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.x * ROWS + ty
    b = cuda.blockIdx.y
    k, d = w_gate.shape
    st = PRED
    if row < k:
        st = status[b, row]
    active = (st & PRED) == 0
    acc = float32(0.0)
    if active:
        for j in range(lane, d, WARP):
            acc += to_f32(w_gate[row, j]) * x[b, j]
    g = _row_sum_f32(sh, ty, lane, acc)
    v = _activate(g, threshold, act)
    if row < k and lane == 0:
        if active:
            h1[b, row] = v
            if v == 0:
                status[b, row] = ZERO
        else:
            h1[b, row] = 0.0


def up_py(w_up, x, actual_sparsity, status, h1, h3):
    """Non-fused step 2+3: h3 = h1 * (W_up . x) for the surviving rows (marks COMP)."""
    sh = cuda.shared.array((ROWS, WARP), float32)
    lane = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.x * ROWS + ty
    b = cuda.blockIdx.y
    k, d = w_up.shape
    st = PRED
    if row < k:
        st = status[b, row]
    active = (st & PRED) == 0 and not (actual_sparsity and (st & ZERO) != 0)
    acc = float32(0.0)
    if active:
        for j in range(lane, d, WARP):
            acc += to_f32(w_up[row, j]) * x[b, j]
    u = _row_sum_f32(sh, ty, lane, acc)
    if row < k and lane == 0:
        if active:
            h3[b, row] = h1[b, row] * u
            status[b, row] = st | COMP
        else:
            h3[b, row] = 0.0


def down_py(w_down_t, h3, status, y):
    """y[b, j] += sum over COMP rows of the block's tile of h3[b, row] * W_down^T[row, j]."""
    j = cuda.blockIdx.x * DOWN_COLS + cuda.threadIdx.x
    r0 = cuda.blockIdx.y * DOWN_ROWS
    b = cuda.blockIdx.z
    k, d = w_down_t.shape
    r1 = min(r0 + DOWN_ROWS, k)
    acc = float32(0.0)
    any_row = False
    for r in range(r0, r1):
        if status[b, r] & COMP:
            any_row = True
            if j < d:
                acc += h3[b, r] * to_f32(w_down_t[r, j])
    if any_row and j < d:
        cuda.atomic.add(y, (b, j), acc)


KERNEL_FUNCS = {
    "pack_x_signs": pack_x_signs_py,
    "predict": predict_py,
    "gate_up_fused": gate_up_fused_py,
    "gate": gate_py,
    "up": up_py,
    "down": down_py,
}

pack_x_signs_kernel = cuda.jit(pack_x_signs_py)
predict_kernel = cuda.jit(predict_py)
gate_up_fused_kernel = cuda.jit(gate_up_fused_py)
gate_kernel = cuda.jit(gate_py)
up_kernel = cuda.jit(up_py)
down_kernel = cuda.jit(down_py)


# ---- host side ------------------------------------------------------------------------------------

def _u32(t: torch.Tensor):
    a = _dev(t)
    return a.view(np.uint32)


class NumbaCUDABackend:
    name = "numba-cuda"

    def prepare(self, w_gate, w_up, w_down) -> PreparedMLP:
        want = "cpu" if SIM else "cuda"
        if w_gate.device.type != want:
            raise ValueError(f"numba-cuda needs {want} tensors{' (simulator)' if SIM else ''}, got {w_gate.device}")
        prep = prepare_common(self.name, w_gate, w_up, w_down)
        st = prep.state
        st["cu_gate"] = _dev(st["w_gate"])
        st["cu_up"] = _dev(st["w_up"])
        st["cu_down_t"] = _dev(st["w_down_t"])
        st["cu_signs"] = _u32(st["signs"])
        return prep

    def _status(self, prep: PreparedMLP, xf: torch.Tensor, alpha: Optional[float], stream) -> torch.Tensor:
        B, k = xf.shape[0], prep.k
        status = torch.zeros((B, k), dtype=torch.int8, device=xf.device)
        if alpha is not None:
            nw = prep.state["signs"].shape[1]
            sx = torch.empty((B, nw), dtype=torch.int32, device=xf.device)
            pack_x_signs_kernel[(math.ceil(nw / 64), B), 64, stream](_dev(xf), _u32(sx))
            predict_kernel[(math.ceil(k / ROWS), B), (WARP, ROWS), stream](
                prep.state["cu_signs"], _u32(sx), nneg_threshold(alpha, prep.d), _dev(status)
            )
        return status

    def predict(self, prep: PreparedMLP, x: torch.Tensor, alpha: float) -> torch.Tensor:
        return self.predictor(prep, x, alpha)() != 0

    def predictor(self, prep: PreparedMLP, x: torch.Tensor, alpha: float):
        check_input(prep, x)
        xf, stream = x.float().contiguous(), _stream()
        return lambda: self._status(prep, xf, alpha, stream)

    def forward(self, prep: PreparedMLP, x: torch.Tensor, *, alpha: Optional[float], threshold: float = 0.0,
                actual_sparsity: bool = True, fused: bool = True, with_counters: bool = False,
                return_mask: bool = False, activation: str = "relu") -> MLPResult:
        check_input(prep, x)
        act = activation_code(activation)
        st = prep.state
        stream = _stream()
        xf = x.float().contiguous()
        B, k, d = xf.shape[0], prep.k, prep.d
        status = self._status(prep, xf, alpha, stream)
        h3 = torch.empty((B, k), dtype=torch.float32, device=xf.device)
        y = torch.zeros((B, d), dtype=torch.float32, device=xf.device)
        rows_grid, rows_block = (math.ceil(k / ROWS), B), (WARP, ROWS)
        thr, as_on = float(threshold), bool(actual_sparsity)
        if fused:
            gate_up_fused_kernel[rows_grid, rows_block, stream](
                st["cu_gate"], st["cu_up"], _dev(xf), thr, act, as_on, _dev(status), _dev(h3)
            )
        else:
            h1 = torch.empty((B, k), dtype=torch.float32, device=xf.device)
            gate_kernel[rows_grid, rows_block, stream](st["cu_gate"], _dev(xf), thr, act, _dev(status), _dev(h1))
            up_kernel[rows_grid, rows_block, stream](st["cu_up"], _dev(xf), as_on, _dev(status), _dev(h1), _dev(h3))
        down_kernel[(math.ceil(d / DOWN_COLS), math.ceil(k / DOWN_ROWS), B), DOWN_COLS, stream](
            st["cu_down_t"], _dev(h3), _dev(status), _dev(y)
        )
        counters = Counters.from_status(status.cpu().numpy()) if with_counters else None
        mask = (status & PRED) != 0 if return_mask else None
        return MLPResult(y=y.to(x.dtype), counters=counters, predicted_mask=mask)

    def prepare_linear(self, w: torch.Tensor) -> PreparedLinear:
        return prepare_linear_cuda(self.name, w)

    def channel_linear(self, prep: PreparedLinear, x: torch.Tensor, *, threshold: float,
                       scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
        return channel_linear_cuda(prep, x, threshold=threshold, scale=scale, with_counts=with_counts)

    def prepare_lowrank(self, a: torch.Tensor, u: torch.Tensor) -> LowRank:
        """A projection's rank-r remainder (a = diag(S_r) V_r^T, u = U_r) in this backend's layout."""
        return prepare_lowrank_common(self.prepare_linear, a, u)

    def channel_mlp(self, preps, x: torch.Tensor, *, thresholds, scales=(None, None, None), activation: str = "silu",
                    lowrank=None, with_counts: bool = False) -> ChannelResult:
        """The decode step of a channel-sparse MLP block (gate, up, act * up, down) in one call,
        with each projection's low-rank remainder where `lowrank` gives one (R-Sparse)."""
        return channel_mlp_cuda(preps, x, thresholds=thresholds, scales=scales, activation=activation,
                                lowrank=lowrank, with_counts=with_counts)
