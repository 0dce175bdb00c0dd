"""The channel-sparse linear on ``numba-cpu``: reads only the w_t rows of kept input channels.

One compiled call per ``channel_linear``: list the kept channels (for B > 1 the union over the
batch, so each needed weight row is read from memory once per call), then hand chunks of that list
to the threads. A chunk walks its rows eight at a time (independent memory streams keep misses
in flight; each row is one contiguous read) and adds ``x[b, j] * w_t[j]`` into a private
float32 accumulator per batch row; for B > 1 it goes GROUP rows at a time so a group's rows are
still in cache for the other batch rows, and each batch row adds only the channels it keeps. The
accumulators are summed in chunk order (no atomics: the result does not depend on which thread
took which chunk). Half-precision weights are read as 16-bit views and widened in registers
(``halfbits.py``). Small calls run on one thread, without a thread team.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from numba import njit, prange

from sparseinfer_kernels.channels import (ChannelResult, PreparedLinear, check_channel_input, check_channel_mlp,
                                         prepare_linear_common)
from sparseinfer_kernels.halfbits import fetch_add, numba_view, to_f32

_FM = {"reassoc", "contract", "nsz"}  # as cpu.py: vectorisable float32 sums, no nnan/ninf assumptions
GROUP = 16  # union rows per step for B > 1 (a group of 7B rows stays in L2 across the batch rows)
# Weight elements x batch rows under which one thread beats a fork/join: measured on a 2-core Xeon
# VM, a 576x1536 float32 product at 50% (442k elements, 1.7 MB) takes 64 us on one thread, 95 on two.
SERIAL_BELOW = 1 << 21
CHUNKS_PER_THREAD = 4  # each chunk holds a (B, n_out) float32 accumulator; taken dynamically
SUM_COLS = 1024  # output columns per task when the chunks' accumulators are summed


@njit(cache=True)
def list_kept(x, scale, has_scale, thr, invert, keep, idx, counts):
    """keep[b, j] = |x[b, j]| * scale[j] > thr (float32, IEEE: no fastmath here), or its negation
    with `invert` (the skipped channels, which a low-rank remainder takes); idx[:n] = the channels
    some row keeps, ascending; counts[b] = channels row b keeps. Returns n."""
    B, n_in = x.shape
    n = 0
    for j in range(n_in):
        s = scale[j] if has_scale else np.float32(1.0)
        any_row = False
        for b in range(B):
            k = (abs(x[b, j]) * s > thr) != invert
            keep[b, j] = k
            if k:
                counts[b] += 1
                any_row = True
        if any_row:
            idx[n] = j
            n += 1
    return n


@njit(cache=True, fastmath=_FM)
def _axpys(w_t, rows, vals, n, acc):
    """acc += sum over m < n of vals[m] * w_t[rows[m]]: eight rows per pass over acc (eight streams
    in flight, and a 7B accumulator of up to 44 KB read and written once per eight rows), then four, then one."""
    d = acc.shape[0]
    m = 0
    while m + 8 <= n:
        r0, r1, r2, r3 = w_t[rows[m]], w_t[rows[m + 1]], w_t[rows[m + 2]], w_t[rows[m + 3]]
        r4, r5, r6, r7 = w_t[rows[m + 4]], w_t[rows[m + 5]], w_t[rows[m + 6]], w_t[rows[m + 7]]
        v0, v1, v2, v3 = vals[m], vals[m + 1], vals[m + 2], vals[m + 3]
        v4, v5, v6, v7 = vals[m + 4], vals[m + 5], vals[m + 6], vals[m + 7]
        for j in range(d):
            acc[j] += (((v0 * to_f32(r0[j]) + v1 * to_f32(r1[j])) + (v2 * to_f32(r2[j]) + v3 * to_f32(r3[j])))
                       + ((v4 * to_f32(r4[j]) + v5 * to_f32(r5[j])) + (v6 * to_f32(r6[j]) + v7 * to_f32(r7[j]))))
        m += 8
    if m + 4 <= n:
        r0, r1, r2, r3 = w_t[rows[m]], w_t[rows[m + 1]], w_t[rows[m + 2]], w_t[rows[m + 3]]
        v0, v1, v2, v3 = vals[m], vals[m + 1], vals[m + 2], vals[m + 3]
        for j in range(d):
            acc[j] += (v0 * to_f32(r0[j]) + v1 * to_f32(r1[j])) + (v2 * to_f32(r2[j]) + v3 * to_f32(r3[j]))
        m += 4
    while m < n:
        r0 = w_t[rows[m]]
        v0 = vals[m]
        for j in range(d):
            acc[j] += v0 * to_f32(r0[j])
        m += 1


@njit(cache=True)
def _chunk(w_t, x, keep, idx, lo, hi, acc, rows, vals):
    """acc[b] = sum over the union channels idx[lo:hi] that row b keeps of x[b, j] * w_t[j]."""
    B = x.shape[0]
    acc[:] = 0.0
    if B == 1:  # the union is row 0's own list
        for m in range(lo, hi):
            vals[m - lo] = x[0, idx[m]]
        _axpys(w_t, idx[lo:hi], vals, hi - lo, acc[0])
        return
    for g0 in range(lo, hi, GROUP):
        g1 = min(g0 + GROUP, hi)
        for b in range(B):
            n = 0
            for m in range(g0, g1):
                j = idx[m]
                if keep[b, j]:
                    rows[n] = j
                    vals[n] = x[b, j]
                    n += 1
            _axpys(w_t, rows, vals, n, acc[b])


@njit(cache=True)
def sum_chunks(part, y, c0, c1):
    """y[b, c0:c1] = part[0, b] + part[1, b] + ... in chunk order."""
    for b in range(y.shape[0]):
        for j in range(c0, c1):
            y[b, j] = part[0, b, j]
        for c in range(1, part.shape[0]):
            for j in range(c0, c1):
                y[b, j] += part[c, b, j]


@njit(parallel=True, cache=True)
def channel_kernel(w_t, x, scale, has_scale, thr, invert, workers, serial_below, chunks_per_thread):
    """y (B, n_out) float32 and kept counts (B,) int64 for x (B, n_in) float32 and w_t (n_in, n_out)
    (float32, or uint16 / int16 bits of bfloat16 / float16); scale is ignored unless has_scale;
    `invert` sums the channels the threshold skips instead of those it keeps."""
    B, n_in = x.shape
    n_out = w_t.shape[1]
    keep = np.empty((B, n_in), dtype=np.bool_)
    idx = np.empty(n_in, dtype=np.int64)
    counts = np.zeros(B, dtype=np.int64)
    n = list_kept(x, scale, has_scale, thr, invert, keep, idx, counts)
    y = np.empty((B, n_out), dtype=np.float32)
    if workers == 1 or n * n_out * B < serial_below:
        _chunk(w_t, x, keep, idx, 0, n, y, np.empty(GROUP, dtype=np.int64), np.empty(max(n, GROUP), dtype=np.float32))
        return y, counts
    nch = max(1, min(n, workers * chunks_per_thread))
    span = (n + nch - 1) // nch + GROUP
    part = np.empty((nch, B, n_out), dtype=np.float32)
    rows_all = np.empty((workers, GROUP), dtype=np.int64)  # per-thread scratch
    vals_all = np.empty((workers, span), dtype=np.float32)
    counter = np.zeros(1, dtype=np.int64)
    for t in prange(workers):
        while True:
            c = fetch_add(counter)
            if c >= nch:
                break
            _chunk(w_t, x, keep, idx, c * n // nch, (c + 1) * n // nch, part[c], rows_all[t], vals_all[t])
    nsum = (n_out + SUM_COLS - 1) // SUM_COLS
    for s in prange(nsum):
        sum_chunks(part, y, s * SUM_COLS, min((s + 1) * SUM_COLS, n_out))
    return y, counts


# ---- host side (NumbaCPUBackend's prepare_linear / channel_linear delegate here) ---------------------

def prepare_linear_cpu(backend: str, w: torch.Tensor) -> PreparedLinear:
    if isinstance(w, torch.Tensor) and w.device.type != "cpu":
        raise ValueError(f"numba-cpu needs CPU tensors, got {w.device}")
    prep = prepare_linear_common(backend, w)
    prep.state["nb_w_t"] = numba_view(prep.state["w_t"])
    return prep


def channel_linear_cpu(prep: PreparedLinear, x: torch.Tensor, threads: int, *, threshold: float,
                       scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
    thr = check_channel_input(prep, x, threshold, scale, "numba-cpu")
    xf = x.float().contiguous().numpy()
    sc = xf[0] if scale is None else scale.contiguous().numpy()  # xf[0]: a float32 placeholder, unread
    y, counts = channel_kernel(prep.state["nb_w_t"], xf, sc, scale is not None, thr, False, threads, SERIAL_BELOW,
                               CHUNKS_PER_THREAD)
    return ChannelResult(y=torch.from_numpy(y).to(x.dtype), kept=counts if with_counts else None)


@njit(cache=True)
def _gated(g, u, act):
    """h = act(g) * u in float32; act 0 = SiLU (stable: (g or g*e) / (1 + e), e = exp(-|g|)), 1 = ReLU."""
    B, k = g.shape
    h = np.empty((B, k), dtype=np.float32)
    one = np.float32(1.0)
    for b in range(B):
        for i in range(k):
            gv = g[b, i]
            if act == 0:
                e = np.float32(np.exp(-abs(gv)))
                a = (gv if gv >= 0 else gv * e) / (one + e)
            else:
                a = gv if gv > 0 else np.float32(0.0)
            h[b, i] = a * u[b, i]
    return h


@njit(cache=True)
def _lowrank_serial(la, lu, x, s, has_scale, thr, y):
    """y[b] += u (a x_skipped[b]) on one thread, for remainders too small to pay for a thread team:
    the skipped channels' rows of a^T (r values each), then the r rows of u^T."""
    B, n_in = x.shape
    r = lu.shape[0]
    rows = np.empty(n_in, dtype=np.int64)
    vals = np.empty(n_in, dtype=np.float32)
    every = np.arange(r)
    z = np.empty(r, dtype=np.float32)
    for b in range(B):
        n = 0
        for j in range(n_in):
            sc = s[j] if has_scale else np.float32(1.0)
            if not abs(x[b, j]) * sc > thr:
                rows[n] = j
                vals[n] = x[b, j]
                n += 1
        z[:] = 0.0
        _axpys(la, rows, vals, n, z)
        _axpys(lu, every, z, r, y[b])


@njit(cache=True)
def _product(w, x, s, has_scale, thr, has_lr, la, lu, workers, serial_below, cpt):
    """One channel-sparse product; with has_lr, plus its low-rank remainder: z = a over the skipped
    channels, then y += u z. Large remainders run the same parallel kernel twice (inverted keep for
    z; threshold -1 for u, which every |z| passes); small ones one serial loop."""
    y, c = channel_kernel(w, x, s, has_scale, thr, False, workers, serial_below, cpt)
    if has_lr:
        B, n_in = x.shape
        if workers == 1 or (n_in + lu.shape[1]) * lu.shape[0] * B < serial_below:
            _lowrank_serial(la, lu, x, s, has_scale, thr, y)
        else:
            z, _ = channel_kernel(la, x, s, has_scale, thr, True, workers, serial_below, cpt)
            r, _ = channel_kernel(lu, z, z[0], False, np.float32(-1.0), False, workers, serial_below, cpt)
            y += r
    return y, c


@njit(cache=True)
def channel_mlp_kernel(wg, wu, wd, x, sg, su, sd, has_scale, tg, tu, td, act, lr_on, lga, lgu, lua, luu, lda, ldu,
                       workers, serial_below, cpt):
    """One decode step of a channel-sparse MLP block in one compiled call (one dispatch from Python
    instead of three, and no torch ops between them): gate and up on x's kept channels,
    h = act(gate) * up, down on h's kept channels; lr_on[p] adds projection p's low-rank remainder
    (factors l?a, l?u; placeholders where off). Returns y (B, d) float32 and the channels kept
    per row over the three products. (Measured on a 2-core VM at 576x1536: the three products
    one after another, each serial below SERIAL_BELOW, beat one parallel region split by columns.)"""
    g, cg = _product(wg, x, sg, has_scale, tg, lr_on[0], lga, lgu, workers, serial_below, cpt)
    u, cu = _product(wu, x, su, has_scale, tu, lr_on[1], lua, luu, workers, serial_below, cpt)
    h = _gated(g, u, act)
    y, cd = _product(wd, h, sd, has_scale, td, lr_on[2], lda, ldu, workers, serial_below, cpt)
    return y, cg + cu + cd


def channel_mlp_cpu(preps, x: torch.Tensor, threads: int, *, thresholds, scales=(None, None, None),
                    activation: str = "silu", lowrank=None, with_counts: bool = False) -> ChannelResult:
    thr, code = check_channel_mlp(preps, x, thresholds, scales, activation, "numba-cpu", lowrank)
    xf = x.float().contiguous().numpy()
    has = scales[0] is not None
    if has != (scales[1] is not None) or has != (scales[2] is not None):
        raise ValueError("channel_mlp: give a scale for all three projections or for none")
    sg, su, sd = (s.contiguous().numpy() for s in scales) if has else (xf[0], xf[0], xf[0])  # unread placeholders
    g, u, d = (p.state["nb_w_t"] for p in preps)
    lrs = lowrank or (None, None, None)
    on = np.array([lr is not None for lr in lrs])
    # an absent remainder passes its projection's own weight twice as a placeholder (same type, unread)
    factors = [f for lr, w in zip(lrs, (g, u, d))
               for f in ((w, w) if lr is None else (lr.a.state["nb_w_t"], lr.u.state["nb_w_t"]))]
    y, counts = channel_mlp_kernel(g, u, d, xf, sg, su, sd, has, thr[0], thr[1], thr[2], code, on, *factors,
                                   threads, SERIAL_BELOW, CHUNKS_PER_THREAD)
    return ChannelResult(y=torch.from_numpy(y).to(x.dtype), kept=counts if with_counts else None)
