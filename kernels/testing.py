"""Helpers to check a backend against the reference (used by the tests and the simulator script)."""

from __future__ import annotations

import itertools
from typing import Iterable, Optional

import torch

from sparseinfer_kernels.interface import Backend, MLPResult, PreparedMLP

ALPHAS = (0.9, 1.0, 1.03, 1.5, None)
THRESHOLDS = (0.0, 0.01)  # relu, fatrelu (ProSparse's T)
SILU_THRESHOLDS = (0.0, 0.25)  # CATS: every row kept but g == 0; about half the rows of random_case(activation="silu")


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol relative to max |y|) for outputs computed in float32 and returned in `dtype`."""
    if dtype == torch.float32:
        return 1e-5, 1e-5
    if dtype == torch.float16:
        return 2e-3, 2e-3
    return 1.6e-2, 1.6e-2  # bfloat16: 8 mantissa bits, one rounding of the output


def assert_same(got: MLPResult, want: MLPResult, dtype: torch.dtype, what: str = "") -> None:
    """Masks and counters exactly equal, outputs to dtype tolerance."""
    assert got.y.dtype == want.y.dtype == dtype, (what, got.y.dtype)
    assert got.y.shape == want.y.shape, (what, got.y.shape)
    if want.predicted_mask is not None:
        assert got.predicted_mask is not None, what
        assert torch.equal(got.predicted_mask.cpu(), want.predicted_mask.cpu()), f"{what}: predicted masks differ"
    if want.counters is not None:
        assert got.counters == want.counters, f"{what}: counters {got.counters} != {want.counters}"
    rtol, atol = tolerances(dtype)
    scale = float(want.y.float().abs().max()) or 1.0
    torch.testing.assert_close(got.y.float().cpu(), want.y.float().cpu(), rtol=rtol, atol=atol * scale,
                               msg=lambda m: f"{what}: {m}")


def configs(alphas: Iterable[Optional[float]] = ALPHAS, thresholds: Iterable[float] = THRESHOLDS):
    """Every (alpha, threshold, actual_sparsity, fused) combination."""
    return itertools.product(alphas, thresholds, (True, False), (True, False))


def compare_backends(backend: Backend, prep: PreparedMLP, reference: Backend, ref_prep: PreparedMLP,
                     x: torch.Tensor, x_ref: torch.Tensor, alpha, threshold, actual_sparsity, fused,
                     check_predict: bool = True, activation: str = "relu") -> MLPResult:
    kw = dict(alpha=alpha, threshold=threshold, actual_sparsity=actual_sparsity, fused=fused,
              with_counters=True, return_mask=True, activation=activation)
    got = backend.forward(prep, x, **kw)
    want = reference.forward(ref_prep, x_ref, **kw)
    what = f"{backend.name} {prep.dtype} d={prep.d} k={prep.k} B={x.shape[0]} alpha={alpha} T={threshold} " \
           f"AS={actual_sparsity} fused={fused} act={activation}"
    assert_same(got, want, prep.dtype, what)
    if alpha is not None and check_predict:
        assert torch.equal(backend.predict(prep, x, alpha).cpu(), want.predicted_mask.cpu()), f"{what}: predict()"
        bound = torch.as_tensor(backend.predictor(prep, x, alpha)()).cpu() != 0  # status or mask: nonzero = PRED
        assert torch.equal(bound, want.predicted_mask.cpu()), f"{what}: predictor()"
    return want


def silu_extremes(w_gate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A copy of w_gate whose rows 1, 2 and 3 give, for input row 0, g == 0 exactly (a zero row),
    g about -1e4 (exp(-g) overflows float32: the naive silu form would divide by inf) and g about
    +1e4. Rows 1 and 2 must come out as exact zeros of silu at any threshold."""
    w = w_gate.clone()
    x0 = x[0].double()
    unit = x0 / x0.dot(x0)  # unit . x0 == 1
    w[1] = 0.0
    w[2] = (-1e4 * unit).to(w.dtype)
    w[3] = (1e4 * unit).to(w.dtype)
    return w
