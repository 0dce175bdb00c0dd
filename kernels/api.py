"""The kernel interface the engine uses: ``get_backend(name).prepare(...)`` once, ``forward`` per token.

Backends: ``torch`` (reference; defines the expected results, runs on CPU or CUDA tensors),
``numba-cpu`` (njit, parallel) and ``numba-cuda`` (numba.cuda; a GPU, or the CUDA simulator with
``NUMBA_ENABLE_CUDASIM=1`` for tests). All take float32 / float16 / bfloat16 weights.

Semantics (ARCHITECTURE.md, "The SparseInfer step"): rows predicted sparse by Eq. 2 (``alpha * N_pos < N_neg`` on the
sign bits, see ``signs.py``; none with ``alpha=None``) skip everything; the others compute
``g = W_gate[i] . x`` (float32 accumulation) and ``h1 = act(g)``, where ``activation`` picks

* ``"relu"`` (the default): ``h1 = g if g >= threshold else 0`` (ReLU, or FATReLU for a positive
  threshold);
* ``"silu"`` (CATS): ``a = silu(g) = g * sigmoid(g)`` in float32 (the stable form
  ``(g if g >= 0 else g * e) / (1 + e)`` with ``e = exp(-|g|)``), ``h1 = a if |a| > threshold else 0``
  (strict, as CATS's ``abs(x).gt(t)``). With ``alpha=None`` this is CATS exactly: the gate is
  computed for every row, up and down only for rows with ``h1 != 0``.

With ``actual_sparsity`` a row whose ``h1`` is 0 (counted in ``actual_sparse``) also skips
``W_up[i]`` and ``W_down^T[i]``; otherwise ``h3 = h1 * (W_up[i] . x)`` and ``y += h3[i] * W_down^T[i]``
over the computed rows. ``y`` is accumulated in float32 and returned in the input dtype. Any other
``activation`` is a ValueError.

Every backend also has the input-channel-sparse linear of TEAL / WiSparse: ``prepare_linear(w)``
once per nn.Linear weight, ``channel_linear(prep, x, threshold=..., scale=...)`` per call
(``channels.py``), and the block's decode step ``channel_mlp(preps, x, ...)``, with R-Sparse's
low-rank remainder of the skipped channels where ``lowrank`` gives ``prepare_lowrank(a, u)``.
"""

from __future__ import annotations

import os

from sparseinfer_kernels.interface import (
    ACTIVATIONS,
    BACKENDS,
    COMP,
    DTYPES,
    PRED,
    ZERO,
    Backend,
    ChannelResult,
    Counters,
    LowRank,
    MLPResult,
    PreparedLinear,
    PreparedMLP,
    check_input,
    check_weights,
)
from sparseinfer_kernels.channels import truncate_lowrank

__all__ = ["ACTIVATIONS", "BACKENDS", "COMP", "DTYPES", "PRED", "ZERO", "Backend", "ChannelResult", "Counters", "LowRank",
           "MLPResult", "PreparedLinear", "PreparedMLP", "available_backends", "check_input", "check_weights",
           "get_backend", "truncate_lowrank"]


def _cuda_usable() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return True
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no driver, no toolkit: simply unavailable
        return False


def available_backends() -> list[str]:
    """The backends that can run on this machine."""
    names = ["torch", "numba-cpu"]
    if _cuda_usable():
        names.append("numba-cuda")
    return names


def get_backend(name: str) -> Backend:
    """A backend by name: "torch", "numba-cpu" or "numba-cuda" (ValueError if unknown or unavailable)."""
    if name == "torch":
        from sparseinfer_kernels.reference import TorchBackend

        return TorchBackend()
    if name == "numba-cpu":
        from sparseinfer_kernels.cpu import NumbaCPUBackend

        return NumbaCPUBackend()
    if name == "numba-cuda":
        if not _cuda_usable():
            raise ValueError(
                "backend 'numba-cuda' is unavailable: no CUDA GPU/driver found by numba.cuda "
                "(set NUMBA_ENABLE_CUDASIM=1 for the slow simulator)"
            )
        from sparseinfer_kernels.cuda import NumbaCUDABackend

        return NumbaCUDABackend()
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
