"""The llvmlite intrinsics behind the Numba CPU kernels."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from sparseinfer_kernels.halfbits import fetch_add, numba_view, popcount, sign_bit_f32, to_f32


@njit(cache=True)
def _widen(a, out):
    for i in range(a.shape[0]):
        out[i] = to_f32(a[i])


@njit(cache=True)
def _signs_and_counts(x, words, signs, counts):
    for i in range(x.shape[0]):
        signs[i] = sign_bit_f32(x[i])
    for i in range(words.shape[0]):
        counts[i] = popcount(words[i])


@njit(cache=True)
def _take_all(counter, n):
    seen = 0
    while fetch_add(counter) < n:
        seen += 1
    return seen


def test_half_bits_widen_exactly():
    vals = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6e-8, float("inf"), -float("inf"), 3.14159, -1e-3])
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        t = vals.to(dtype)
        out = np.empty(len(vals), dtype=np.float32)
        _widen(numba_view(t), out)
        want = t.float().numpy()
        assert np.array_equal(out.view(np.uint32), want.view(np.uint32)), dtype  # bit-exact, signed zeros too
    nan = numba_view(torch.tensor([float("nan")], dtype=torch.bfloat16))
    out = np.empty(1, dtype=np.float32)
    _widen(nan, out)
    assert np.isnan(out[0])


def test_sign_bit_and_popcount():
    x = np.array([1.0, -1.0, 0.0, -0.0, np.inf, -np.inf], dtype=np.float32)
    words = np.array([0, 1, 0xFFFFFFFF, 0x80000001], dtype=np.uint32)
    signs, counts = np.empty(6, np.uint32), np.empty(4, np.int64)
    _signs_and_counts(x, words, signs, counts)
    assert signs.tolist() == [0, 1, 0, 1, 0, 1]
    assert counts.tolist() == [0, 1, 32, 2]
    w64 = np.array([2**64 - 1, 2**63], dtype=np.uint64)
    counts64 = np.empty(2, np.int64)
    _signs_and_counts(x[:0], w64, signs[:0], counts64)
    assert counts64.tolist() == [64, 1]


def test_fetch_add_counts_up():
    counter = np.zeros(1, dtype=np.int64)
    assert _take_all(counter, 5) == 5
    assert counter[0] == 6  # the failing take also increments
