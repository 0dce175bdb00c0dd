"""numba-cuda without a GPU: the kernels in the CUDA simulator, and PTX for sm_80 / sm_90 via NVRTC.

Both run in subprocesses: NUMBA_ENABLE_CUDASIM must be set before numba.cuda is imported (and must
be unset for compile_ptx), whatever the rest of the test session has imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparseinfer_kernels import cuda_ptx

HERE = Path(__file__).parent


def _run(args: list[str], sim: bool, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_cuda_kernels_in_simulator_match_reference():
    proc = _run([str(HERE / "cuda_sim_check.py")], sim=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # 5 relu cases, 6 silu (CATS) cases, silu's extreme gate values fused and not, the bad-activation check
    assert proc.stdout.count("ok ") == 5 + 6 + 2 + 1, proc.stdout


def test_every_cuda_kernel_compiles_to_ptx_for_sm80_and_sm90():
    proc = _run(["-m", "sparseinfer_kernels.cuda_ptx"], sim=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "implementation NVIDIA" in proc.stdout  # numba-cuda, not numba's bundled cuda target
    expected = [f"{name}/{label}" for name, entries in cuda_ptx.kernel_signatures().items() for label, _ in entries]
    assert len(expected) == 18  # 3 dtype-free kernels + 5 kernels x 3 weight dtypes
    for cc in ("sm_80", "sm_90"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(cc + ":"))
        for kernel in expected:
            assert f"{kernel} (" in line, (cc, kernel, line)


def test_numba_cuda_backend_unavailable_without_gpu_is_a_clear_error():
    from sparseinfer_kernels.api import available_backends, get_backend

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or "numba-cuda" in available_backends():
        pytest.skip("a GPU (or the simulator) is present")
    with pytest.raises(ValueError, match="numba-cuda.*unavailable"):
        get_backend("numba-cuda")
