"""get_backend / available_backends and the interface's input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseinfer_kernels.api import Backend, Counters, available_backends, get_backend
from sparseinfer_kernels.synthetic import random_case, synthetic_mlp


def test_available_and_unknown():
    names = available_backends()
    assert names[:2] == ["torch", "numba-cpu"]
    for name in names:
        be = get_backend(name)
        assert be.name == name and isinstance(be, Backend)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        get_backend("cuda")


def test_kernels_package_is_light():
    import subprocess
    import sys

    code = "import sys, sparseinfer_kernels; assert 'torch' not in sys.modules and 'numba' not in sys.modules; " \
           "assert not hasattr(sparseinfer_kernels, '__version__')"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["torch", "numba-cpu"])
def test_weight_checks(name):
    be = get_backend(name)
    wg, wu, wd, x = random_case(64, 200, 1)
    with pytest.raises(ValueError, match="w_down has shape"):
        be.prepare(wg, wu, wd.t())
    with pytest.raises(ValueError, match="same dtype"):
        be.prepare(wg, wu.half(), wd)
    with pytest.raises(ValueError, match="dtype torch.float64"):
        be.prepare(wg.double(), wu.double(), wd.double())
    prep = be.prepare(wg, wu, wd)
    with pytest.raises(ValueError, match="x must be"):
        be.forward(prep, x[0], alpha=1.0)


@pytest.mark.parametrize("name", ["torch", "numba-cpu"])
def test_result_types(name):
    be = get_backend(name)
    wg, wu, wd, x = random_case(72, 200, 2, torch.bfloat16)
    prep = be.prepare(wg, wu, wd)
    res = be.forward(prep, x, alpha=1.0, with_counters=True, return_mask=True)
    assert res.y.shape == (2, 72) and res.y.dtype == torch.bfloat16
    assert res.predicted_mask.shape == (2, 200) and res.predicted_mask.dtype == torch.bool
    c = res.counters
    for arr in (c.predicted_sparse, c.actual_sparse, c.rows_computed):
        assert arr.dtype == np.int64 and arr.shape == (2,)
    assert (c.predicted_sparse + c.actual_sparse + c.rows_computed == 200).all()  # AS on: a partition
    plain = be.forward(prep, x, alpha=1.0)
    assert plain.counters is None and plain.predicted_mask is None
    assert torch.equal(plain.y, res.y)
    mask = be.predict(prep, x, 1.0)
    assert mask.dtype == torch.bool and torch.equal(mask, res.predicted_mask)


def test_counters_equality():
    a = Counters(np.array([1, 2]), np.array([0, 0]), np.array([3, 3]))
    assert a == Counters(np.array([1, 2]), np.array([0, 0]), np.array([3, 3]))
    assert a != Counters(np.array([1, 2]), np.array([0, 1]), np.array([3, 3]))


def test_synthetic_sparsity_is_built_into_the_data():
    wg, wu, wd, x = synthetic_mlp(256, 2000, 0.8, seed=3)
    g = x @ wg.t()
    assert abs(float((g < 0).float().mean()) - 0.8) < 0.03
    be = get_backend("numba-cpu")
    res = be.forward(be.prepare(wg, wu, wd), x, alpha=1.0, with_counters=True)
    assert res.counters.predicted_sparse[0] / 2000 > 0.6
