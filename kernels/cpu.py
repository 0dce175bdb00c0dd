"""The ``numba-cpu`` backend: ``njit(parallel=True, cache=True)`` kernels over CPU torch tensors.

Layouts: ``W_gate`` and ``W_up`` stay as given (row-major (k, d)), sign words are (k, ceil(d/32))
uint32, ``W_down^T`` is (k, d). Half-precision weights are read as 16-bit integer views and widened
in registers (``halfbits.py``), so bf16/fp16 move half the bytes of float32.

Work split: one call is one parallel region (``block_kernel``). The k rows are cut into chunks
(BLOCK_CHUNKS_PER_THREAD per thread) that the threads take dynamically from an atomic counter, so a
thread that shares its core with another process simply takes fewer chunks. A chunk is carried
through the whole block by the thread that took it: its rows are predicted, the kept ones gated and
upped, and their down rows added into the chunk's own float32 partial (down needs only the h3 of
the same rows). The last work items sum the partials by column blocks, in chunk order, once every
chunk is done: no atomics on the output, results independent of which thread took which chunk, and
one wake-up of the thread team per call instead of one per step (on a small CPU each costs 10-100
us, as much as a small layer's whole weight read).

Inside a chunk the rows a kernel must read are first listed (no gathers: each listed row is then
read whole and contiguously) and processed four at a time: four independent memory streams keep
more cache misses in flight than one row after another, which is what a row-skipping GEMV needs to
approach the memory bandwidth. Dot products accumulate in float32 with reassociation allowed
(vectorised). With B > 1 decode rows a chunk lists the union of the rows any batch row needs and
walks it GROUP rows at a time with the batch loop inside, so each weight row is read from memory
once per call rather than B times (the group is still in cache for the other batch rows); each
batch row computes only its own rows, in the same blocks of four as alone, so its results are
bit-identical to a B == 1 call cut into the same chunks. B == 1 keeps the plain path.

Code layout: the work on one chunk of rows is a plain ``njit`` function (``_predict_chunk``,
``_fused_chunk``, ``_gate_chunk``, ``_up_chunk``, ``_down_chunk``, all called by ``_block_chunk``);
``block_kernel`` is the ``parallel=True`` driver, ``block_serial`` runs the same chunk function on
all rows at once for calls smaller than SERIAL_BELOW (no thread team). ``predict_status`` is the
predictor alone (``predict()`` and the benchmarks' predictor timing).
"""

from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np
import torch
from numba import njit, prange
from numba.np.ufunc import parallel as _parallel

from sparseinfer_kernels.channels import ChannelResult, LowRank, PreparedLinear, prepare_lowrank_common
from sparseinfer_kernels.channels_cpu import channel_linear_cpu, channel_mlp_cpu, prepare_linear_cpu, sum_chunks
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
from sparseinfer_kernels.halfbits import fetch_add, load_acquire, numba_view, popcount, sign_bit_f32, to_f32
from sparseinfer_kernels.reference import prepare_common
from sparseinfer_kernels.signs import nneg_threshold

_FM = {"reassoc", "contract", "nsz"}  # vectorisable float32 reductions; no nnan/ninf assumptions
_PRED, _ZERO, _COMP = np.int8(PRED), np.int8(ZERO), np.int8(COMP)


@njit(cache=True, inline="always")
def _bounds(c, nch, k):
    return c * k // nch, (c + 1) * k // nch


@njit(cache=True)
def pack_x_signs(x, out):
    """Sign words (B, nw) of a (B, d) float32 input: bit j % W of word j // W (W = 32 or 64 by
    out's dtype; pad bits 0)."""
    B, d = x.shape
    width = out.itemsize * 8
    for b in range(B):
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for t in range(width):
                j = w * width + t
                if j < d:
                    word |= np.uint64(sign_bit_f32(x[b, j])) << np.uint64(t)
            out[b, w] = word


@njit(cache=True, fastmath=_FM)
def _dots(w, idx, n, x, out):
    """out[m] = W[idx[m]] . x for m < n, four rows per pass over x."""
    d = x.shape[0]
    m = 0
    while m + 4 <= n:
        r0, r1, r2, r3 = w[idx[m]], w[idx[m + 1]], w[idx[m + 2]], w[idx[m + 3]]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for j in range(d):
            xj = x[j]
            a0 += to_f32(r0[j]) * xj
            a1 += to_f32(r1[j]) * xj
            a2 += to_f32(r2[j]) * xj
            a3 += to_f32(r3[j]) * xj
        out[m] = a0
        out[m + 1] = a1
        out[m + 2] = a2
        out[m + 3] = a3
        m += 4
    while m < n:
        r0 = w[idx[m]]
        a0 = np.float32(0.0)
        for j in range(d):
            a0 += to_f32(r0[j]) * x[j]
        out[m] = a0
        m += 1


@njit(cache=True, fastmath=_FM)
def _axpys(w, idx, vals, n, acc):
    """acc += sum over m < n of vals[m] * W[idx[m]], four rows per pass over acc."""
    d = acc.shape[0]
    m = 0
    while m + 4 <= n:
        r0, r1, r2, r3 = w[idx[m]], w[idx[m + 1]], w[idx[m + 2]], w[idx[m + 3]]
        v0, v1, v2, v3 = vals[m], vals[m + 1], vals[m + 2], vals[m + 3]
        for j in range(d):
            acc[j] += (v0 * to_f32(r0[j]) + v1 * to_f32(r1[j])) + (v2 * to_f32(r2[j]) + v3 * to_f32(r3[j]))
        m += 4
    while m < n:
        r0 = w[idx[m]]
        v0 = vals[m]
        for j in range(d):
            acc[j] += v0 * to_f32(r0[j])
        m += 1


@njit(cache=True, inline="always")
def _silu_f32(g):
    """silu(g) in float32, as reference.silu_f32: (g if g >= 0 else g * e) / (1 + e), e = exp(-|g|)."""
    e = np.float32(math.exp(-abs(g)))
    return (g if g >= 0 else g * e) / (np.float32(1.0) + e)


@njit(cache=True, inline="always")
def _activate(g, thr, act):
    """h1 of one row's float32 gate value: ReLU/FATReLU ``g >= thr`` (act 0) or CATS ``|silu(g)| > thr``."""
    if act == ACT_SILU:
        a = _silu_f32(g)
        return a if abs(a) > thr else np.float32(0.0)
    return g if g >= thr else np.float32(0.0)


# ---- B > 1: each weight row of a chunk is read from memory once for the whole batch -------------------
# The rows some batch row needs are listed (the union), then walked GROUP at a time with the batch loop
# inside, so a group's rows are still in cache when the other batch rows use them. Each batch row
# takes only the rows it needs, in ascending order, and hands them to _dots / _axpys in blocks of four
# counted from the chunk's start as the B == 1 code does: up to three rows of an unfinished block are
# carried into the next group (read again from cache) and the chunk's last group flushes them. So each
# (b, row) result, and each down accumulator's order of additions, is as for a lone row in that chunk.

GROUP = 16  # union rows per step (a group of 7B rows, 256 KB in float32, stays in L2 across the batch)


@njit(cache=True)
def _union(status, lo, hi, mask, want, idx):
    """idx[:n] = the rows i of [lo, hi) that some batch row needs, ascending; returns n. Row b needs i
    when ``(status[b, i] & mask != 0) == want``."""
    n = 0
    for i in range(lo, hi):
        for b in range(status.shape[0]):
            if ((status[b, i] & mask) != 0) == want:
                idx[n] = i
                n += 1
                break
    return n


@njit(cache=True)
def _group_rows(status_b, idx, g0, g1, mask, want, carry_b, nc, rows):
    """rows[:n] = the nc rows carried over, then those of idx[g0:g1] this batch row needs; returns n."""
    for m in range(nc):
        rows[m] = carry_b[m]
    n = nc
    for m in range(g0, g1):
        i = idx[m]
        if ((status_b[i] & mask) != 0) == want:
            rows[n] = i
            n += 1
    return n


@njit(cache=True)
def _carry(rows, n, done, carry_b):
    """Keep rows[done:n] (an unfinished block of four) for the next group; returns how many."""
    for m in range(done, n):
        carry_b[m - done] = rows[m]
    return n - done


@njit(cache=True, inline="always")
def _whole_blocks(n, last):
    """How many of n listed rows to process now: all in the chunk's last group, else whole blocks of four."""
    return n if last else n - n % 4


@njit(cache=True)
def _fused_batch(w_gate, w_up, x, thr, act, actual_sparsity, status, h3, lo, hi, idx, g, u):
    """_fused_chunk for B > 1. h3[b, i] holds row i's activation until its up product replaces it."""
    B = x.shape[0]
    for b in range(B):
        h3[b, lo:hi] = 0.0
    nu = _union(status, lo, hi, _PRED, False, idx)
    rows = np.empty((2, GROUP + 8), dtype=np.int64)  # gate rows; up rows (carried ones first)
    carry = np.empty((2, B, 4), dtype=np.int64)
    nc = np.zeros((2, B), dtype=np.int64)
    for g0 in range(0, nu, GROUP):
        g1 = min(g0 + GROUP, nu)
        last = g1 == nu
        for b in range(B):
            n = _group_rows(status[b], idx, g0, g1, _PRED, False, carry[0, b], nc[0, b], rows[0])
            nd = _whole_blocks(n, last)
            _dots(w_gate, rows[0], nd, x[b], g)
            nc[0, b] = _carry(rows[0], n, nd, carry[0, b])
            n2 = nc[1, b]
            for m in range(n2):
                rows[1, m] = carry[1, b, m]
            for m in range(nd):
                i = rows[0, m]
                v = _activate(g[m], thr, act)
                if v == 0:
                    status[b, i] = _ZERO
                    if actual_sparsity:
                        continue
                h3[b, i] = v
                rows[1, n2] = i
                n2 += 1
            nd2 = _whole_blocks(n2, last)
            _dots(w_up, rows[1], nd2, x[b], u)
            for m in range(nd2):
                i = rows[1, m]
                h3[b, i] = h3[b, i] * u[m]
                status[b, i] |= _COMP
            nc[1, b] = _carry(rows[1], n2, nd2, carry[1, b])


@njit(cache=True)
def _rows_batch(up, w, x, thr, act, actual_sparsity, status, h1, out, lo, hi, idx, vals):
    """The non-fused steps for B > 1: up=False is _gate_chunk (out = h1 = act(w_gate . x), ZERO
    marked), up=True is _up_chunk (out = h3 = h1 * (w_up . x) for the surviving rows, COMP marked)."""
    B = x.shape[0]
    for b in range(B):
        out[b, lo:hi] = 0.0
    skip = _PRED | _ZERO if up and actual_sparsity else _PRED
    nu = _union(status, lo, hi, skip, False, idx)
    rows = np.empty(GROUP + 8, dtype=np.int64)
    carry = np.empty((B, 4), dtype=np.int64)
    nc = np.zeros(B, dtype=np.int64)
    for g0 in range(0, nu, GROUP):
        g1 = min(g0 + GROUP, nu)
        last = g1 == nu
        for b in range(B):
            n = _group_rows(status[b], idx, g0, g1, skip, False, carry[b], nc[b], rows)
            nd = _whole_blocks(n, last)
            _dots(w, rows, nd, x[b], vals)
            for m in range(nd):
                i = rows[m]
                if up:
                    out[b, i] = h1[b, i] * vals[m]
                    status[b, i] |= _COMP
                else:
                    v = _activate(vals[m], thr, act)
                    out[b, i] = v
                    if v == 0:
                        status[b, i] = _ZERO
            nc[b] = _carry(rows, n, nd, carry[b])


@njit(cache=True)
def _down_batch(w_down_t, h3, status, part, c, lo, hi, idx, vals):
    """_down_chunk for B > 1: part[c, b] gets row b's COMP rows in ascending order, four at a time."""
    B = h3.shape[0]
    for b in range(B):
        part[c, b, :] = 0.0
    nu = _union(status, lo, hi, _COMP, True, idx)
    rows = np.empty(GROUP + 8, dtype=np.int64)
    carry = np.empty((B, 4), dtype=np.int64)
    nc = np.zeros(B, dtype=np.int64)
    for g0 in range(0, nu, GROUP):
        g1 = min(g0 + GROUP, nu)
        last = g1 == nu
        for b in range(B):
            n = _group_rows(status[b], idx, g0, g1, _COMP, True, carry[b], nc[b], rows)
            for m in range(n):
                vals[m] = h3[b, rows[m]]
            nd = _whole_blocks(n, last)
            _axpys(w_down_t, rows, vals, nd, part[c, b])
            nc[b] = _carry(rows, n, nd, carry[b])


# ---- one chunk of rows [lo, hi) (plain njit functions, shared by the serial and parallel drivers) ----

@njit(cache=True)
def _predict_chunk(sign_w, sign_x, nneg_min, status, lo, hi):
    """Rows [lo, hi) as four interleaved sub-ranges: four sequential streams in flight at once. The
    batch loop is inside: four rows' sign words (a few KB) are read from memory once and stay in L1
    while every batch row is compared with them."""
    nw = sign_w.shape[1]
    q = (hi - lo) // 4
    for r in range(q):
        i0 = lo + r
        i1 = i0 + q
        i2 = i1 + q
        i3 = i2 + q
        a0, a1, a2, a3 = sign_w[i0], sign_w[i1], sign_w[i2], sign_w[i3]
        for b in range(sign_x.shape[0]):
            xs = sign_x[b]
            n0 = 0
            n1 = 0
            n2 = 0
            n3 = 0
            for w in range(nw):
                v = xs[w]
                n0 += popcount(a0[w] ^ v)
                n1 += popcount(a1[w] ^ v)
                n2 += popcount(a2[w] ^ v)
                n3 += popcount(a3[w] ^ v)
            status[b, i0] = _PRED if n0 >= nneg_min else np.int8(0)
            status[b, i1] = _PRED if n1 >= nneg_min else np.int8(0)
            status[b, i2] = _PRED if n2 >= nneg_min else np.int8(0)
            status[b, i3] = _PRED if n3 >= nneg_min else np.int8(0)
    for i in range(lo + 4 * q, hi):
        row = sign_w[i]
        for b in range(sign_x.shape[0]):
            xs = sign_x[b]
            n = 0
            for w in range(nw):
                n += popcount(row[w] ^ xs[w])
            status[b, i] = _PRED if n >= nneg_min else np.int8(0)


@njit(cache=True)
def _not_predicted(status_b, out_b, lo, hi, idx):
    """Zero out_b[lo:hi] and list in idx the rows of [lo, hi) not predicted sparse; returns how many."""
    n = 0
    for i in range(lo, hi):
        out_b[i] = 0.0
        if not (status_b[i] & _PRED):
            idx[n] = i
            n += 1
    return n


@njit(cache=True)
def _fused_chunk(w_gate, w_up, x, thr, act, actual_sparsity, status, h3, lo, hi, idx, idx2, g, h1, u):
    if x.shape[0] > 1:
        _fused_batch(w_gate, w_up, x, thr, act, actual_sparsity, status, h3, lo, hi, idx, g, u)
        return
    for b in range(x.shape[0]):
        n = _not_predicted(status[b], h3[b], lo, hi, idx)
        _dots(w_gate, idx, n, x[b], g)
        n2 = 0
        for m in range(n):
            v = _activate(g[m], thr, act)
            if v == 0:
                status[b, idx[m]] = _ZERO
                if actual_sparsity:
                    continue
            idx2[n2] = idx[m]
            h1[n2] = v
            n2 += 1
        _dots(w_up, idx2, n2, x[b], u)
        for m in range(n2):
            i = idx2[m]
            h3[b, i] = h1[m] * u[m]
            status[b, i] |= _COMP


@njit(cache=True)
def _gate_chunk(w_gate, x, thr, act, status, h1, lo, hi, idx, g):
    if x.shape[0] > 1:
        _rows_batch(False, w_gate, x, thr, act, False, status, h1, h1, lo, hi, idx, g)
        return
    for b in range(x.shape[0]):
        n = _not_predicted(status[b], h1[b], lo, hi, idx)
        _dots(w_gate, idx, n, x[b], g)
        for m in range(n):
            v = _activate(g[m], thr, act)
            h1[b, idx[m]] = v
            if v == 0:
                status[b, idx[m]] = _ZERO


@njit(cache=True)
def _up_chunk(w_up, x, actual_sparsity, status, h1, h3, lo, hi, idx, u):
    if x.shape[0] > 1:
        _rows_batch(True, w_up, x, np.float32(0.0), 0, actual_sparsity, status, h1, h3, lo, hi, idx, u)
        return
    for b in range(x.shape[0]):
        n = 0
        for i in range(lo, hi):
            h3[b, i] = 0.0
            st = status[b, i]
            if not ((st & _PRED) or (actual_sparsity and (st & _ZERO))):
                idx[n] = i
                n += 1
        _dots(w_up, idx, n, x[b], u)
        for m in range(n):
            i = idx[m]
            h3[b, i] = h1[b, i] * u[m]
            status[b, i] |= _COMP


@njit(cache=True)
def _down_chunk(w_down_t, h3, status, part, c, lo, hi, idx, vals):
    if h3.shape[0] > 1:
        _down_batch(w_down_t, h3, status, part, c, lo, hi, idx, vals)
        return
    for b in range(h3.shape[0]):
        n = 0
        for i in range(lo, hi):
            if status[b, i] & _COMP:
                idx[n] = i
                vals[n] = h3[b, i]
                n += 1
        acc = part[c, b]
        acc[:] = 0.0
        _axpys(w_down_t, idx, vals, n, acc)


# ---- drivers: hand the chunks out to the threads (prange) or run them in order (serial) -------------
# Per-thread scratch is allocated before the prange and indexed by the prange variable.

@njit(parallel=True, cache=True)
def predict_status(sign_w, x, nneg_min, workers, serial_below, chunks_per_thread):
    """The whole predictor in one compiled call: pack x's signs, then per row status PRED if
    popcount(sign_w[i] ^ sign_x[b]) >= nneg_min else 0. Returns status (B, k) int8.

    sign_w is (k, nw) uint32 words or, when nw is even, the same bytes viewed as uint64 (half the
    popcounts; little-endian, so bit order and counts are unchanged); x is (B, d) float32.
    One compiled call from Python, because at 7B size the predictor's data takes ~0.2 ms to stream
    and each Python-level step around it costs 10-50 us on a cold cache."""
    B, k, nw = x.shape[0], sign_w.shape[0], sign_w.shape[1]
    sign_x = np.empty((B, nw), dtype=sign_w.dtype)
    pack_x_signs(x, sign_x)
    status = np.empty((B, k), dtype=np.int8)
    if workers == 1 or k * nw * sign_w.itemsize * B < serial_below:
        _predict_chunk(sign_w, sign_x, nneg_min, status, 0, k)
        return status
    nch = min(k, workers * chunks_per_thread)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(workers):
        while True:
            c = fetch_add(counter)
            if c >= nch:
                break
            lo, hi = _bounds(c, nch, k)
            _predict_chunk(sign_w, sign_x, nneg_min, status, lo, hi)
    return status


@njit(cache=True)
def _block_buffers(sign_w, x, k, predict, fused):
    """A block call's buffers: x's sign words (packed when predicting), status, h1 (non-fused only), h3."""
    B = x.shape[0]
    sign_x = np.empty((B, sign_w.shape[1]), dtype=sign_w.dtype)
    if predict:
        pack_x_signs(x, sign_x)
    h1 = np.empty((B, k) if not fused else (1, 1), dtype=np.float32)
    return sign_x, np.empty((B, k), dtype=np.int8), h1, np.empty((B, k), dtype=np.float32)


@njit(cache=True)
def _block_chunk(sign_w, sign_x, nneg_min, predict, w_gate, w_up, w_down_t, x, thr, act, actual_sparsity, fused,
                 status, h1, h3, part, c, lo, hi, idx, val):
    """Everything the block does on rows [lo, hi): predict them, gate/up the kept ones, and add their
    down rows into part[c] (down only needs the h3 of the same rows)."""
    if predict:
        _predict_chunk(sign_w, sign_x, nneg_min, status, lo, hi)
    else:
        status[:, lo:hi] = 0
    if fused:
        _fused_chunk(w_gate, w_up, x, thr, act, actual_sparsity, status, h3, lo, hi, idx[0], idx[1],
                     val[0], val[1], val[2])
    else:
        _gate_chunk(w_gate, x, thr, act, status, h1, lo, hi, idx[0], val[0])
        _up_chunk(w_up, x, actual_sparsity, status, h1, h3, lo, hi, idx[0], val[0])
    _down_chunk(w_down_t, h3, status, part, c, lo, hi, idx[0], val[0])


@njit(parallel=True, cache=True)
def block_kernel(sign_w, nneg_min, predict, w_gate, w_up, w_down_t, x, thr, act, actual_sparsity, fused,
                 workers, nch, ncol):
    """One MLP block's decode step in one parallel region; returns (y (B, d) float32, status (B, k)).

    x's signs are packed first (B x d, serial). Then the threads take work items from one atomic
    counter: items [0, nch) are row chunks, each predicted, gated/upped and added into its own down
    partial part[c] (``_block_chunk``); items [nch, nch + ncol) are column blocks of the final sum
    y = sum_c part[c], in chunk order. A thread that takes a column block waits (spinning on a done
    counter) until every row chunk is finished; all row chunks were handed out before it, so they are
    all running. One region instead of one per step: each fork/join costs 10-100 us on a small CPU
    (a sleeping team's wake-up), as much as a small layer's whole weight read. Sums in chunk order:
    the result does not depend on which thread took which chunk.

    ``predict`` False marks no row PRED (the no-prediction variant); ``fused`` False runs gate and up
    as two passes over the chunk (h1 in between). ``act``/``thr`` as in ``_activate``."""
    B, k, d = x.shape[0], w_gate.shape[0], x.shape[1]
    sign_x, status, h1, h3 = _block_buffers(sign_w, x, k, predict, fused)
    part = np.empty((nch, B, d), dtype=np.float32)
    y = np.empty((B, d), dtype=np.float32)
    span = (k + nch - 1) // nch + 1
    counter = np.zeros(1, dtype=np.int64)
    done = np.zeros(1, dtype=np.int64)
    idx_all = np.empty((workers, 2, span), dtype=np.int64)  # per-thread scratch
    val_all = np.empty((workers, 3, span), dtype=np.float32)
    for t in prange(workers):
        while True:
            c = fetch_add(counter)
            if c < nch:
                lo, hi = _bounds(c, nch, k)
                _block_chunk(sign_w, sign_x, nneg_min, predict, w_gate, w_up, w_down_t, x, thr, act,
                             actual_sparsity, fused, status, h1, h3, part, c, lo, hi, idx_all[t], val_all[t])
                fetch_add(done)
            elif c < nch + ncol:
                while load_acquire(done) < nch:
                    pass
                j0, j1 = _bounds(c - nch, ncol, d)
                sum_chunks(part, y, j0, j1)
            else:
                break
    return y, status


@njit(cache=True)
def block_serial(sign_w, nneg_min, predict, w_gate, w_up, w_down_t, x, thr, act, actual_sparsity, fused):
    """block_kernel on one thread, all rows as one chunk (calls too small to pay for a thread team)."""
    B, k, d = x.shape[0], w_gate.shape[0], x.shape[1]
    sign_x, status, h1, h3 = _block_buffers(sign_w, x, k, predict, fused)
    y = np.empty((1, B, d), dtype=np.float32)
    idx = np.empty((2, k + 1), dtype=np.int64)
    val = np.empty((3, k + 1), dtype=np.float32)
    _block_chunk(sign_w, sign_x, nneg_min, predict, w_gate, w_up, w_down_t, x, thr, act, actual_sparsity, fused,
                 status, h1, h3, y, 0, 0, k, idx, val)
    return y[0], status


SERIAL_BELOW = 1 << 18  # weight elements x batch rows under which one thread beats a fork/join
CHUNKS_PER_THREAD = 16  # the predictor's rows are handed out in chunks, dynamically (a busy core takes fewer)
BLOCK_CHUNKS_PER_THREAD = 8  # the block's chunks: each keeps a d-length down partial per batch row
SUM_COLUMNS = 512  # columns per work item of the block's final sum


def _num_threads() -> int:
    """numba.get_num_threads() without its per-call thread-pool init locks (~25 us on a cold cache)
    once the pool is up: the layer's own getter, which honours numba.set_num_threads."""
    if _parallel._is_initialized:
        return _parallel._get_num_threads()
    return numba.get_num_threads()


def _chunks(k: int, threads: int, per_thread: int) -> int:
    return max(1, min(k, per_thread * threads))


class NumbaCPUBackend:
    name = "numba-cpu"

    def prepare(self, w_gate, w_up, w_down) -> PreparedMLP:
        if w_gate.device.type != "cpu":
            raise ValueError(f"numba-cpu needs CPU tensors, got {w_gate.device}")
        prep = prepare_common(self.name, w_gate, w_up, w_down)
        st = prep.state
        st["nb_gate"] = numba_view(st["w_gate"])
        st["nb_up"] = numba_view(st["w_up"])
        st["nb_down_t"] = numba_view(st["w_down_t"])
        words = st["signs"].numpy().view(np.uint32)
        st["nb_words"] = words.view(np.uint64) if words.shape[1] % 2 == 0 else words  # for predict_status
        return prep

    def _predict_status(self, prep: PreparedMLP, xf: np.ndarray, alpha: Optional[float], threads: int) -> np.ndarray:
        if alpha is None:
            return np.zeros((xf.shape[0], prep.k), dtype=np.int8)
        return predict_status(prep.state["nb_words"], xf, nneg_threshold(alpha, prep.d), threads,
                              SERIAL_BELOW, CHUNKS_PER_THREAD)

    def predict(self, prep: PreparedMLP, x: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.from_numpy(self.predictor(prep, x, alpha)().view(np.bool_))  # PRED == 1

    def predictor(self, prep: PreparedMLP, x: torch.Tensor, alpha: float):
        """The predictor exactly as forward() runs it, arguments resolved once (for benchmarks)."""
        check_input(prep, x)
        xf, threads = x.float().contiguous().numpy(), _num_threads()
        return lambda: self._predict_status(prep, xf, alpha, threads)

    def forward(self, prep: PreparedMLP, x: torch.Tensor, *, alpha: Optional[float], threshold: float = 0.0,
                actual_sparsity: bool = True, fused: bool = True, with_counters: bool = False,
                return_mask: bool = False, activation: str = "relu") -> MLPResult:
        check_input(prep, x)
        act = activation_code(activation)
        st = prep.state
        xf = x.float().contiguous().numpy()
        B, k, d = xf.shape[0], prep.k, prep.d
        threads = _num_threads()
        predict = alpha is not None
        nneg_min = nneg_threshold(alpha, d) if predict else 0
        args = (st["nb_words"], nneg_min, predict, st["nb_gate"], st["nb_up"], st["nb_down_t"], xf,
                np.float32(threshold), act, bool(actual_sparsity), bool(fused))
        if threads == 1 or k * d * B < SERIAL_BELOW:  # small call: one chunk of all rows, no thread team
            y, status = block_serial(*args)
        else:
            nch = _chunks(k, threads, BLOCK_CHUNKS_PER_THREAD)
            y, status = block_kernel(*args, threads, nch, max(1, min(2 * threads, d // SUM_COLUMNS)))
        counters = Counters.from_status(status) if with_counters else None
        mask = torch.from_numpy((status & PRED) != 0) if return_mask else None
        return MLPResult(y=torch.from_numpy(y).to(x.dtype), counters=counters, predicted_mask=mask)

    def prepare_linear(self, w: torch.Tensor) -> PreparedLinear:
        return prepare_linear_cpu(self.name, w)

    def channel_linear(self, prep: PreparedLinear, x: torch.Tensor, *, threshold: float,
                       scale: Optional[torch.Tensor] = None, with_counts: bool = False) -> ChannelResult:
        return channel_linear_cpu(prep, x, _num_threads(), threshold=threshold, scale=scale, with_counts=with_counts)

    def prepare_lowrank(self, a: torch.Tensor, u: torch.Tensor) -> LowRank:
        """A projection's rank-r remainder (a = diag(S_r) V_r^T, u = U_r) in this backend's layout."""
        return prepare_lowrank_common(self.prepare_linear, a, u)

    def channel_mlp(self, preps, x: torch.Tensor, *, thresholds, scales=(None, None, None), activation: str = "silu",
                    lowrank=None, with_counts: bool = False) -> ChannelResult:
        """The decode step of a channel-sparse MLP block (gate, up, act * up, down) in one call,
        with each projection's low-rank remainder where `lowrank` gives one (R-Sparse)."""
        return channel_mlp_cpu(preps, x, _num_threads(), thresholds=thresholds, scales=scales,
                               activation=activation, lowrank=lowrank, with_counts=with_counts)
