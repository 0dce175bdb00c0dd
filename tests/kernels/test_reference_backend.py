"""The torch reference backend against a literal float64 reading of ARCHITECTURE.md, "The SparseInfer step"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseinfer_kernels.api import get_backend
from sparseinfer_kernels.signs import is_predicted_sparse
from sparseinfer_kernels.synthetic import random_case
from sparseinfer_kernels.testing import configs, tolerances


def literal_mlp(wg, wu, wd, x, alpha, threshold, actual_sparsity, activation="relu"):
    """Row by row, float64: returns y (B, d), mask (B, k), counters (3, B)."""
    wg, wu, wd, x = (t.double().numpy() for t in (wg, wu, wd, x))
    sw, sx = np.signbit(wg), np.signbit(x)
    B, d = x.shape
    k = wg.shape[0]
    y = np.zeros((B, d))
    mask = np.zeros((B, k), dtype=bool)
    counts = np.zeros((3, B), dtype=np.int64)
    for b in range(B):
        for i in range(k):
            if alpha is not None:
                nneg = int((sw[i] != sx[b]).sum())
                if is_predicted_sparse(alpha, nneg, d):
                    mask[b, i] = True
                    counts[0, b] += 1
                    continue
            g = wg[i] @ x[b]
            if activation == "silu":  # CATS
                a = g / (1.0 + np.exp(-g))
                h1 = a if abs(a) > threshold else 0.0
            else:
                h1 = g if g >= threshold else 0.0
            if h1 == 0:
                counts[1, b] += 1
                if actual_sparsity:
                    continue
            counts[2, b] += 1
            y[b] += h1 * (wu[i] @ x[b]) * wd[:, i]
    return y, mask, counts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d,k,B", [(64, 256, 1), (72, 200, 3)])
def test_reference_matches_literal_definition(d, k, B, dtype):
    ref = get_backend("torch")
    for threshold in (0.0, 0.01):
        wg, wu, wd, x = random_case(d, k, B, dtype, threshold=threshold, seed=d + k + B)
        prep = ref.prepare(wg, wu, wd)
        seen_caught = 0
        for alpha, thr, as_on, fused in configs(thresholds=(threshold,)):
            if not fused:
                continue  # the reference has one code path
            res = ref.forward(prep, x, alpha=alpha, threshold=thr, actual_sparsity=as_on,
                              with_counters=True, return_mask=True)
            y, mask, counts = literal_mlp(wg, wu, wd, x, alpha, thr, as_on)
            assert np.array_equal(res.predicted_mask.numpy(), mask)
            assert res.counters.predicted_sparse.tolist() == counts[0].tolist()
            assert res.counters.actual_sparse.tolist() == counts[1].tolist()
            assert res.counters.rows_computed.tolist() == counts[2].tolist()
            rtol, atol = tolerances(dtype)
            torch.testing.assert_close(res.y.double(), torch.from_numpy(y).to(dtype).double(), rtol=2 * rtol,
                                       atol=2 * atol * float(np.abs(y).max()))
            if alpha is not None:
                seen_caught += int(counts[1].sum())
        assert seen_caught > 0  # actual sparsity had rows to catch after the predictor


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d,k,B", [(37, 53, 1), (70, 129, 3)])
def test_reference_silu_matches_literal_definition(d, k, B, dtype):
    ref = get_backend("torch")
    for threshold in (0.0, 0.25):
        wg, wu, wd, x = random_case(d, k, B, dtype, threshold=threshold, seed=d + k + B, activation="silu")
        prep = ref.prepare(wg, wu, wd)
        for alpha, as_on in ((None, True), (None, False), (1.0, True), (1.0, False)):
            res = ref.forward(prep, x, alpha=alpha, threshold=threshold, actual_sparsity=as_on,
                              with_counters=True, return_mask=True, activation="silu")
            with np.errstate(over="ignore"):
                y, mask, counts = literal_mlp(wg, wu, wd, x, alpha, threshold, as_on, activation="silu")
            assert np.array_equal(res.predicted_mask.numpy(), mask)
            assert res.counters.predicted_sparse.tolist() == counts[0].tolist()
            assert res.counters.actual_sparse.tolist() == counts[1].tolist()
            assert res.counters.rows_computed.tolist() == counts[2].tolist()
            rtol, atol = tolerances(dtype)
            torch.testing.assert_close(res.y.double(), torch.from_numpy(y).to(dtype).double(), rtol=2 * rtol,
                                       atol=2 * atol * float(np.abs(y).max()))
            if alpha is None and threshold > 0:
                assert 0.3 < counts[1].sum() / (B * k) < 0.7  # about half the rows dropped


def test_fatrelu_case_has_rows_between_zero_and_threshold():
    wg, wu, wd, x = random_case(72, 200, 1, threshold=0.01, seed=1)
    g = (wg.double() @ x.double().t()).squeeze(1)
    assert int(((g >= 0) & (g < 0.01)).sum()) >= 10


def test_extra_bytes_and_layouts():
    ref = get_backend("torch")
    wg, wu, wd, _ = random_case(72, 200, 1, torch.bfloat16)
    prep = ref.prepare(wg, wu, wd)
    assert (prep.d, prep.k, prep.dtype) == (72, 200, torch.bfloat16)
    assert prep.state["signs"].shape == (200, 3)
    assert prep.state["w_down_t"].shape == (200, 72) and prep.state["w_down_t"].is_contiguous()
    assert prep.extra_bytes == 200 * 3 * 4 + 200 * 72 * 2
