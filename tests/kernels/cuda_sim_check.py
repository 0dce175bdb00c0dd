"""Run the numba-cuda backend in the CUDA simulator against the reference (small shapes).

Executed by test_cuda_sim.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 (which must be set before
numba.cuda is first imported). Prints one line per case; exits non-zero on the first mismatch.
"""

from __future__ import annotations

import os
import sys
import time

import torch

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

from sparseinfer_kernels.api import available_backends, get_backend  # noqa: E402
from sparseinfer_kernels.synthetic import random_case  # noqa: E402
from sparseinfer_kernels.testing import compare_backends, silu_extremes  # noqa: E402

torch.set_num_threads(1)
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# (dtype, d, k, B, [(alpha, threshold, actual_sparsity, fused), ...]); k <= 64 rows: the simulator is slow.
CASES = [
    (F32, 72, 40, 1, [(1.03, 0.01, False, False), (None, 0.0, True, True)]),
    (F16, 72, 40, 1, [(0.9, 0.0, False, True)]),
    (BF16, 64, 32, 2, [(1.0, 0.01, True, True), (1.5, 0.01, True, False)]),
]
# CATS (activation="silu"), same layout; T=0.25 drops about half the rows, T=0 none. The data keep
# |silu(g)| away from 0.25 and g away from 0, so T=0 runs on the same data.
SILU_CASES = [
    (F32, 37, 53, 1, [(None, 0.0, True, True), (None, 0.25, True, False), (1.0, 0.25, False, True)]),
    (F16, 37, 53, 3, [(None, 0.25, True, True)]),
    (BF16, 70, 129, 1, [(None, 0.25, False, False), (1.0, 0.25, True, True)]),
]


def main() -> int:
    assert "numba-cuda" in available_backends()
    ref, be = get_backend("torch"), get_backend("numba-cuda")
    from sparseinfer_kernels import cuda as cuda_backend

    assert cuda_backend.SIM
    t0 = time.time()
    for activation, cases in (("relu", CASES), ("silu", SILU_CASES)):
        for dtype, d, k, B, cfgs in cases:
            thr = max(c[1] for c in cfgs)
            wg, wu, wd, x = random_case(d, k, B, dtype, threshold=thr, seed=d + k + B, activation=activation)
            prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
            for n, (alpha, threshold, as_on, fused) in enumerate(cfgs):
                want = compare_backends(be, prep, ref, ref_prep, x, x, alpha, threshold, as_on, fused,
                                        check_predict=n == 0 and activation == "relu", activation=activation)
                print(f"ok {activation} {dtype} d={d} k={k} B={B} alpha={alpha} T={threshold} AS={as_on} "
                      f"fused={fused} counters={want.counters.as_dict()} t={time.time() - t0:.1f}s", flush=True)
    # silu's exact zeros: g == 0 and g = -1e4 (exp overflow in the naive form) are dropped at T=0, no NaN
    wg, wu, wd, x = random_case(37, 53, 1, BF16, seed=3, activation="silu")
    wg = silu_extremes(wg, x)
    prep, ref_prep = be.prepare(wg, wu, wd), ref.prepare(wg, wu, wd)
    for fused in (True, False):
        want = compare_backends(be, prep, ref, ref_prep, x, x, None, 0.0, True, fused, activation="silu")
        assert want.counters.actual_sparse.tolist() == [2], want.counters
        print(f"ok silu extremes fused={fused} t={time.time() - t0:.1f}s", flush=True)
    try:
        be.forward(prep, x, alpha=None, activation="gelu")
    except ValueError as e:
        assert "'relu', 'silu'" in str(e), e
        print("ok bad activation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
