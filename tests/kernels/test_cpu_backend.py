"""numba-cpu against the torch reference: odd shapes, all dtypes, alphas, relu/fatrelu, AS, fusion, batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseinfer_kernels import cpu
from sparseinfer_kernels.api import get_backend
from sparseinfer_kernels.signs import nneg_threshold
from sparseinfer_kernels.synthetic import random_case, synthetic_mlp
from sparseinfer_kernels.testing import THRESHOLDS, assert_same, compare_backends, configs

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


def test_one_region_block_independent_of_chunks_taken_and_sum_split():
    """block_kernel (one parallel region: chunks carried from prediction to their down partial, then
    the partials summed by column blocks once all chunks are done): y and status do not depend on
    how many threads run it or into how many column blocks the final sum is cut, and agree with the
    one-chunk serial call."""
    d, k, B = 130, 3001, 2
    wg, wu, wd, x = random_case(d, k, B, torch.float32, threshold=0.0, seed=11)
    be = get_backend("numba-cpu")
    st = be.prepare(wg, wu, wd).state
    xf = x.float().contiguous().numpy()
    for predict, fused in ((True, True), (True, False), (False, True)):
        args = (st["nb_words"], nneg_threshold(1.0, d), predict, st["nb_gate"], st["nb_up"], st["nb_down_t"], xf,
                np.float32(0.0), 0, True, fused)
        want_y, want_status = cpu.block_kernel(*args, 2, 24, 1)
        for workers, ncol in ((1, 1), (2, 3), (3, 7), (4, d)):  # more workers than cores; one column per block
            y, status = cpu.block_kernel(*args, workers, 24, ncol)
            assert np.array_equal(y, want_y) and np.array_equal(status, want_status), (predict, fused, workers, ncol)
        y1, status1 = cpu.block_serial(*args)
        assert np.array_equal(status1, want_status)
        np.testing.assert_allclose(y1, want_y, rtol=1e-4, atol=1e-4 * float(np.abs(want_y).max()))
        assert (status1 != 0).any() and ((status1 & 1) != 0).any() == predict


def _mixed_batch(d, k, dtype, seed=7, margin=1e-3):
    """Weights skewed to ~90% sparse for x0 and five input rows with very different masks: x0 (sparse),
    -x0 (dense), x0 with 30% of its signs flipped, a random row, 3 * x0 (x0's mask again). Gate rows
    whose pre-activation lies within `margin` of 0 or 0.01 for some input row are redrawn, so
    summation order cannot flip an activation against the reference."""
    wg, wu, wd, x0 = synthetic_mlp(d, k, 0.9, torch.float32, seed=seed, margin=0.2, spread=0.3)
    gen = torch.Generator().manual_seed(seed)
    x0 = x0[0]
    flip = torch.rand(d, generator=gen) < 0.3
    x = torch.stack([x0, -x0, torch.where(flip, -x0, x0), torch.randn(d, generator=gen), 3 * x0]).to(dtype)
    wg = wg.to(dtype)
    for _ in range(100):
        g = wg.double() @ x.double().t()
        bad = ((g.abs() < margin) | ((g - 0.01).abs() < margin)).any(dim=1)
        if not bool(bad.any()):
            break
        wg[bad] = (torch.randn(int(bad.sum()), d, generator=gen) * d**-0.5).to(dtype)
    return wg, wu.to(dtype), wd.to(dtype), x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_batch_rows_share_reads_and_match_lone_rows(dtype, monkeypatch):
    """B > 1 walks the union of needed rows in groups (several chunks, several groups per chunk,
    carried blocks of four): per batch row, y is bit-identical to running that row alone, and masks
    and counters match the reference, on the serial and the parallel path."""
    d, k = 72, 2999
    wg, wu, wd, x = _mixed_batch(d, k, dtype)
    be, ref = get_backend("numba-cpu"), get_backend("torch")
    prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
    pred = be.predict(prep, x, 1.0).float().mean(dim=1)
    assert pred[0] > 0.7 and pred[1] < 0.3, pred  # the rows' masks really differ
    for serial_below in (0, 1 << 40):
        monkeypatch.setattr(cpu, "SERIAL_BELOW", serial_below)
        for alpha in (1.0, None):
            for threshold, as_on, fused in ((0.0, True, True), (0.01, True, False), (0.01, False, True),
                                            (0.0, False, False)):
                kw = dict(alpha=alpha, threshold=threshold, actual_sparsity=as_on, fused=fused,
                          with_counters=True, return_mask=True)
                got = be.forward(prep, x, **kw)
                what = f"{dtype} SERIAL_BELOW={serial_below} alpha={alpha} T={threshold} AS={as_on} fused={fused}"
                assert_same(got, ref.forward(ref_prep, x, **kw), dtype, what)
                for b in range(x.shape[0]):
                    alone = be.forward(prep, x[b:b + 1], **kw)
                    assert torch.equal(got.y[b], alone.y[0]), f"{what}: row {b} differs from a lone call"
                    assert torch.equal(got.predicted_mask[b], alone.predicted_mask[0]), what
                    for name in ("predicted_sparse", "actual_sparse", "rows_computed"):
                        assert getattr(got.counters, name)[b] == getattr(alone.counters, name)[0], (what, name)


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
