"""numba-cpu against the torch reference: odd shapes, all dtypes, alphas, relu/fatrelu, AS, fusion, batch."""

from __future__ import annotations

import pytest
import torch

from sparseinfer_kernels import cpu
from sparseinfer_kernels.api import get_backend
from sparseinfer_kernels.synthetic import random_case
from sparseinfer_kernels.testing import THRESHOLDS, compare_backends, configs

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


# Every (d, k) of the odd shapes with one decode row; batches of 3 (own mask per row) on three of them.
SHAPES = [(d, k, 1) for d in (64, 72, 576) for k in (256, 200, 1536)] + [(64, 256, 3), (72, 200, 3), (576, 1536, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("d,k,B", SHAPES)
def test_numba_cpu_matches_reference(d, k, B, dtype):
    ref, be = get_backend("torch"), get_backend("numba-cpu")
    for threshold in THRESHOLDS:
        wg, wu, wd, x = random_case(d, k, B, dtype, threshold=threshold, seed=d * k + B)
        prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
        for alpha, thr, as_on, fused in configs(thresholds=(threshold,)):
            compare_backends(be, prep, ref, ref_prep, x, x, alpha, thr, as_on, fused)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_parallel_and_serial_paths_agree(dtype, monkeypatch):
    """Small calls run single-threaded; force both paths on one case (with the uint32 predictor: d=72)."""
    wg, wu, wd, x = random_case(72, 1536, 3, dtype, threshold=0.01, seed=5)
    be = get_backend("numba-cpu")
    prep = be.prepare(wg, wu, wd)
    out = {}
    for serial_below in (0, 1 << 40):
        monkeypatch.setattr(cpu, "SERIAL_BELOW", serial_below)
        out[serial_below] = be.forward(prep, x, alpha=1.0, threshold=0.01, with_counters=True, return_mask=True)
    a, b = out.values()
    assert torch.equal(a.predicted_mask, b.predicted_mask) and a.counters == b.counters
    monkeypatch.setattr(cpu, "SERIAL_BELOW", 0)
    for _ in range(3):  # chunks go to threads dynamically; the result must not depend on who took what
        again = be.forward(prep, x, alpha=1.0, threshold=0.01)
        assert torch.equal(again.y, a.y)
    torch.testing.assert_close(a.y.float(), b.y.float(), rtol=1e-2, atol=1e-2 * float(a.y.float().abs().max()))


def test_rejects_cuda_or_mismatched_inputs():
    be = get_backend("numba-cpu")
    wg, wu, wd, x = random_case(64, 200, 1)
    prep = be.prepare(wg, wu, wd)
    with pytest.raises(ValueError, match="dtype"):
        be.forward(prep, x.half(), alpha=1.0)
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        be.forward(prep, x[:, :32], alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        be.forward(prep, x, alpha=-1.0)
