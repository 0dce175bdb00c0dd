"""CATS (activation="silu": h1 = silu(g) if |silu(g)| > T else 0) on the CPU backends against the torch
reference; the numba-cuda kernels run the same cases in the simulator (cuda_sim_check.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sparseinfer_kernels import cpu
from sparseinfer_kernels.api import ACTIVATIONS, available_backends, get_backend
from sparseinfer_kernels.reference import silu_f32
from sparseinfer_kernels.synthetic import random_case
from sparseinfer_kernels.testing import SILU_THRESHOLDS, compare_backends, silu_extremes

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(37, 53), (70, 129)]
ALPHAS = (None, 1.0)


def _configs():
    """(alpha, actual_sparsity, fused)"""
    return itertools.product(ALPHAS, (True, False), (True, False))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("d,k", SHAPES)
def test_numba_cpu_silu_matches_reference(d, k, B, dtype):
    ref, be = get_backend("torch"), get_backend("numba-cpu")
    for threshold in SILU_THRESHOLDS:
        wg, wu, wd, x = random_case(d, k, B, dtype, threshold=threshold, seed=d * k + B, activation="silu")
        prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
        for alpha, as_on, fused in _configs():
            want = compare_backends(be, prep, ref, ref_prep, x, x, alpha, threshold, as_on, fused,
                                    check_predict=False, activation="silu")
            c = want.counters
            if alpha is None:  # CATS proper: no predictor, the threshold alone decides
                assert (c.predicted_sparse == 0).all()
                if threshold == 0.0:  # no g is 0 here: every row is kept
                    assert (c.actual_sparse == 0).all() and (c.rows_computed == k).all()
                else:  # about half the rows dropped
                    assert 0.3 < c.actual_sparse.sum() / (B * k) < 0.7, c
                if as_on:  # the dropped rows read neither W_up nor W_down^T
                    assert (c.rows_computed == k - c.actual_sparse).all()
                else:
                    assert (c.rows_computed == k).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_silu_parallel_and_serial_paths_agree(dtype, monkeypatch):
    """The threaded driver (block_kernel) against the reference, fused and not, on a CATS case."""
    ref, be = get_backend("torch"), get_backend("numba-cpu")
    wg, wu, wd, x = random_case(70, 129, 3, dtype, threshold=0.25, seed=7, activation="silu")
    prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
    monkeypatch.setattr(cpu, "SERIAL_BELOW", 0)
    monkeypatch.setattr(cpu, "_num_threads", lambda: 2)
    for alpha, as_on, fused in _configs():
        compare_backends(be, prep, ref, ref_prep, x, x, alpha, 0.25, as_on, fused, check_predict=False,
                         activation="silu")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["torch", "numba-cpu"])
def test_silu_exact_zero_and_huge_gate_values(name, dtype):
    """g == 0 exactly and g = -1e4 (where exp(-g) overflows) are zeros of silu; g = +1e4 is kept; no NaN."""
    ref, be = get_backend("torch"), get_backend(name)
    wg, wu, wd, x = random_case(37, 53, 1, dtype, threshold=0.25, seed=3, activation="silu")
    wg = silu_extremes(wg, x)
    prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
    for threshold, as_on, fused in itertools.product(SILU_THRESHOLDS, (True, False), (True, False)):
        want = compare_backends(be, prep, ref, ref_prep, x, x, None, threshold, as_on, fused,
                                check_predict=False, activation="silu")
        got = be.forward(prep, x, alpha=None, threshold=threshold, actual_sparsity=as_on, fused=fused,
                         activation="silu", with_counters=True)
        assert torch.isfinite(got.y.float()).all()
        if threshold == 0.0:  # rows 1 and 2 only
            assert got.counters.actual_sparse.tolist() == [2] == want.counters.actual_sparse.tolist()
    g = torch.tensor([0.0, -0.0, -1e4, -88.0, -1e-30, 1e4], dtype=torch.float32)
    a = silu_f32(g)
    assert torch.isfinite(a).all() and (a[:3] == 0).all() and a[3] < 0 and a[4] < 0 and a[5] == 1e4


@pytest.mark.parametrize("name", ["torch", "numba-cpu"])
def test_relu_is_the_default_and_unchanged(name):
    """activation="relu" is the default, bit for bit; silu gives other decisions on the same data."""
    be = get_backend(name)
    wg, wu, wd, x = random_case(70, 129, 3, torch.bfloat16, threshold=0.01, seed=11)
    prep = be.prepare(wg, wu, wd)
    for alpha, as_on, fused in _configs():
        kw = dict(alpha=alpha, threshold=0.01, actual_sparsity=as_on, fused=fused, with_counters=True,
                  return_mask=True)
        plain, relu = be.forward(prep, x, **kw), be.forward(prep, x, activation="relu", **kw)
        assert torch.equal(plain.y, relu.y) and plain.counters == relu.counters
        assert torch.equal(plain.predicted_mask, relu.predicted_mask)
        silu = be.forward(prep, x, activation="silu", **kw)
        assert torch.equal(silu.predicted_mask, relu.predicted_mask)  # the predictor ignores the activation
        if alpha is None:
            assert silu.counters != relu.counters


@pytest.mark.parametrize("name", [n for n in available_backends() if n != "numba-cuda"])
@pytest.mark.parametrize("bad", ["gelu", "SiLU", "", None])
def test_bad_activation_is_a_value_error(name, bad):
    be = get_backend(name)
    wg, wu, wd, x = random_case(37, 53, 1)
    prep = be.prepare(wg, wu, wd)
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'silu'"):
        be.forward(prep, x, alpha=None, activation=bad)
    assert set(ACTIVATIONS) == {"relu", "silu"}


def test_silu_data_keeps_away_from_the_threshold():
    """random_case(activation="silu") leaves no |silu(g)| near T and no g near 0 (exact decisions)."""
    wg, _, _, x = random_case(70, 129, 3, threshold=0.25, seed=1, activation="silu")
    g = (wg.double() @ x.double().t()).numpy()
    a = np.abs(g / (1 + np.exp(-g)))
    assert np.abs(a - 0.25).min() > 0.005 and np.abs(g).min() > 0.005
    with pytest.raises(ValueError, match="activation"):
        random_case(8, 8, activation="gelu")
