"""Sign packing and the Eq. 2 threshold (signs.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseinfer_kernels.signs import (
    count_negative,
    is_predicted_sparse,
    n_words,
    nneg_threshold,
    pack_signs,
    popcount_words,
)


def naive_nneg(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """N_neg from unpacked sign bits: (B, k)."""
    return (torch.signbit(w)[None, :, :] != torch.signbit(x)[:, None, :]).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pack_bit_order_and_negative_zero(dtype):
    t = torch.tensor([[-1.0, 2.0, -0.0, 0.0, 3.0] + [1.0] * 28 + [-5.0]], dtype=dtype)  # d = 34
    words = pack_signs(t)
    assert words.shape == (1, 2) and words.dtype == torch.int32
    w = words.numpy().view(np.uint32)
    assert w[0, 0] == (1 << 0) | (1 << 2)  # element j -> bit j % 32; -0.0 is negative, +0.0 is not
    assert w[0, 1] == 1 << 1  # element 33 -> word 1 bit 1; pad bits 2..31 stay 0


def test_pack_all_negative_sets_bit_31():
    words = pack_signs(-torch.ones(3, 32))
    assert (words.numpy().view(np.uint32) == 0xFFFFFFFF).all()


@pytest.mark.parametrize("d", [1, 31, 32, 33, 64, 72, 100])
def test_padding_never_counts(d):
    gen = torch.Generator().manual_seed(d)
    w = torch.randn(17, d, generator=gen)
    x = torch.randn(4, d, generator=gen)
    x[0] = -x[0].abs()  # all-negative input: pad bits (0) would disagree if they were not masked
    w[0] = w[0].abs()
    n = count_negative(pack_signs(w), pack_signs(x))
    assert torch.equal(n, naive_nneg(w, x))
    assert int(n[0, 0]) == d  # every real position disagrees, no pad position does
    assert n_words(d) == (d + 31) // 32


def test_popcount_words_matches_python():
    vals = torch.tensor([0, 1, -1, 2**31 - 1, -(2**31), 0x55555555, -0x55555556], dtype=torch.int32)
    expect = [bin(int(v) & 0xFFFFFFFF).count("1") for v in vals]
    assert popcount_words(vals).tolist() == expect


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0, 1.01, 1.03, 1.5, 3.0, 100.0])
@pytest.mark.parametrize("d", [1, 7, 64, 72, 576, 4096])
def test_threshold_equals_literal_eq2(alpha, d):
    thr = nneg_threshold(alpha, d)
    for n in range(d + 1):
        assert is_predicted_sparse(alpha, n, d) == (n >= thr), (alpha, d, n)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "x"])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        nneg_threshold(bad, 64)


@settings(max_examples=60, deadline=None)
@given(
    d=st.integers(1, 300),
    a1=st.floats(0.0, 4.0, allow_nan=False),
    a2=st.floats(0.0, 4.0, allow_nan=False),
    seed=st.integers(0, 2**16),
)
def test_predicted_sparsity_monotone_in_alpha(d, a1, a2, seed):
    lo, hi = min(a1, a2), max(a1, a2)
    assert nneg_threshold(lo, d) <= nneg_threshold(hi, d)
    gen = torch.Generator().manual_seed(seed)
    w, x = torch.randn(40, d, generator=gen), torch.randn(2, d, generator=gen)
    n = count_negative(pack_signs(w), pack_signs(x))
    sparse_lo = n >= nneg_threshold(lo, d)
    sparse_hi = n >= nneg_threshold(hi, d)
    assert bool((sparse_hi <= sparse_lo).all())  # a row sparse at the larger alpha is sparse at the smaller
