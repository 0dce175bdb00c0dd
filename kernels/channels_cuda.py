"""The channel-sparse linear on ``numba-cuda``: reads only the w_t rows of kept input channels.

Two kernels on torch's current stream:

* ``keep``: one thread per (row b, channel j) writes the flag ``|x[b, j]| * scale[j] > threshold``
  (float32) into an int8 (B, n_in) mask, which also gives the kept counts.
* ``linear``: w_t (n_in, n_out) is cut into tiles of ROWS channels x COLS columns, one block per
  (tile, batch row). The block first stages its channels' flags and x values in shared memory; a
  tile with no kept channel returns there, without touching its weights. Otherwise each thread owns
  one column (coalesced loads along a w_t row) and walks the tile four channels at a time: the
  loads of kept channels are independent, so four are in flight per thread, and an unkept
  channel's load is not issued at all. The partial sum goes to ``y`` with one ``atomic.add`` per
  thread and tile (ROWS times fewer atomics than one per channel), as ``cuda.py``'s down kernel.

Accumulation is float32 for every weight dtype; weights are widened by ``cuda_base.to_f32``.
Shared memory and ``syncthreads`` only, so the same code runs in the CUDA simulator.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from numba import cuda, float32, int32

from sparseinfer_kernels.channels import (ChannelResult, PreparedLinear, check_channel_input, check_channel_mlp,
                                         prepare_linear_common)
from sparseinfer_kernels.cuda_base import SIM, current_stream, dev, to_f32

KEEP_THREADS = 256  # channels per block in the keep kernel
COLS = 128  # output columns (threads) per block in the linear kernel
ROWS = 128  # input channels per tile; a multiple of 4 and <= COLS (each thread stages one channel)


# ---- kernels (plain functions; jitted below, compiled to PTX by cuda_ptx.py) ---------------------

def keep_py(x, scale, has_scale, thr, invert, keep):
    """keep[b, j] = 1 iff |x[b, j]| * scale[j] > thr (scale read only when has_scale); with `invert`
    the negation (the skipped channels, which a low-rank remainder sums)."""
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    b = cuda.blockIdx.y
    if j < x.shape[1]:
        a = abs(x[b, j])
        if has_scale:
            a = a * scale[j]
        keep[b, j] = 1 if (a > thr) != invert else 0


def linear_py(w_t, x, keep, y):
    """y[b, col] += sum over the tile's kept channels r of x[b, r] * w_t[r, col]."""
    flags = cuda.shared.array(ROWS, int32)
    xs = cuda.shared.array(ROWS, float32)
    t = cuda.threadIdx.x
    col = cuda.blockIdx.x * COLS + t
    r0 = cuda.blockIdx.y * ROWS
    b = cuda.blockIdx.z
    n_in = w_t.shape[0]
    n_out = y.shape[1]  # w_t may be wider: a truncated low-rank factor's layout is kept whole
    if t < ROWS:  # stage the tile's flags and x values; channels past n_in are unkept
        r = r0 + t
        k = 0
        v = float32(0.0)
        if r < n_in and keep[b, r] != 0:
            k = 1
            v = x[b, r]
        flags[t] = k
        xs[t] = v
    cuda.syncthreads()
    nr = min(ROWS, n_in - r0)  # channels in this tile; flags past nr are 0 up to the next multiple of 4
    any_kept = 0
    for i in range(nr):
        any_kept |= flags[i]
    if any_kept == 0 or col >= n_out:  # any_kept is the whole block's answer; no syncthreads follows
        return
    acc = float32(0.0)
    for i in range(0, nr, 4):
        w0 = float32(0.0)
        w1 = float32(0.0)
        w2 = float32(0.0)
        w3 = float32(0.0)
        if flags[i]:
            w0 = to_f32(w_t[r0 + i, col])
        if flags[i + 1]:
            w1 = to_f32(w_t[r0 + i + 1, col])
        if flags[i + 2]:
            w2 = to_f32(w_t[r0 + i + 2, col])
        if flags[i + 3]:
            w3 = to_f32(w_t[r0 + i + 3, col])
        acc += (xs[i] * w0 + xs[i + 1] * w1) + (xs[i + 2] * w2 + xs[i + 3] * w3)
    cuda.atomic.add(y, (b, col), acc)


KERNEL_FUNCS = {"channel_keep": keep_py, "channel_linear": linear_py}

keep_kernel = cuda.jit(keep_py)
linear_kernel = cuda.jit(linear_py)


# ---- host side (NumbaCUDABackend's prepare_linear / channel_linear delegate here) ------------------

def prepare_linear_cuda(backend: str, w: torch.Tensor) -> PreparedLinear:
    """w_t on the GPU, and on hardware one empty call so both kernels are compiled before the first token."""
    want = "cpu" if SIM else "cuda"
    if isinstance(w, torch.Tensor) and w.device.type != want:
        raise ValueError(f"numba-cuda needs {want} tensors{' (simulator)' if SIM else ''}, got {w.device}")
    prep = prepare_linear_common(backend, w)
    prep.state["cu_w_t"] = dev(prep.state["w_t"])
    if not SIM:
        channel_linear_cuda(prep, torch.zeros((1, prep.n_in), dtype=w.dtype, device=w.device), threshold=0.0)
    return prep


def channel_linear_cuda(prep: PreparedLinear, x: torch.Tensor, *, threshold: float,
                        scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
    thr = check_channel_input(prep, x, threshold, scale, "numba-cuda")
    y, kept = _launch(prep, x.float().contiguous(), thr, scale, with_counts)
    return ChannelResult(y=y.to(x.dtype), kept=kept)


def _launch(prep: PreparedLinear, xf: torch.Tensor, thr, scale: Optional[torch.Tensor], with_counts: bool,
            invert: bool = False):
    """y (B, n_out) float32 for a float32 input (arguments already checked), and the kept counts
    (with `invert`: the sum over the channels the threshold skips)."""
    stream = current_stream()
    B, n_in, n_out = xf.shape[0], prep.n_in, prep.n_out
    keep = torch.empty((B, n_in), dtype=torch.int8, device=xf.device)
    sc = xf[0] if scale is None else scale.contiguous()  # xf[0]: a float32 placeholder, unread
    keep_kernel[(math.ceil(n_in / KEEP_THREADS), B), KEEP_THREADS, stream](
        dev(xf), dev(sc), scale is not None, thr, invert, dev(keep))
    y = torch.zeros((B, n_out), dtype=torch.float32, device=xf.device)
    linear_kernel[(math.ceil(n_out / COLS), math.ceil(n_in / ROWS), B), COLS, stream](
        prep.state["cu_w_t"], dev(xf), dev(keep), dev(y))
    kept = keep.sum(1, dtype=torch.int64).cpu().numpy() if with_counts else None
    return y, kept


def _product(prep: PreparedLinear, xf: torch.Tensor, thr, scale, lr, with_counts: bool):
    """One channel-sparse product; with a LowRank `lr`, plus z = a over the skipped channels (the
    same kernels, keep inverted) and y += u z over all r (threshold -1: every |z| passes)."""
    y, kept = _launch(prep, xf, thr, scale, with_counts)
    if lr is not None:
        z, _ = _launch(lr.a, xf, thr, scale, False, invert=True)
        y += _launch(lr.u, z, np.float32(-1.0), None, False)[0]
    return y, kept


def channel_mlp_cuda(preps, x: torch.Tensor, *, thresholds, scales=(None, None, None), activation: str = "silu",
                     lowrank=None, with_counts: bool = False) -> ChannelResult:
    """The block as three channel_linear launches (each with its low-rank remainder's two where
    `lowrank` gives one) and torch's act * up between them (on the GPU the launches, not Python,
    are what a CUDA graph removes)."""
    thr, code = check_channel_mlp(preps, x, thresholds, scales, activation, "numba-cuda", lowrank)
    lrs = lowrank or (None, None, None)
    xf = x.float().contiguous()
    g, kg = _product(preps[0], xf, thr[0], scales[0], lrs[0], with_counts)
    u, ku = _product(preps[1], xf, thr[1], scales[1], lrs[1], with_counts)
    h = (torch.nn.functional.silu(g) if code == 0 else torch.relu(g)) * u
    y, kd = _product(preps[2], h, thr[2], scales[2], lrs[2], with_counts)
    return ChannelResult(y=y.to(x.dtype), kept=kg + ku + kd if with_counts else None)
