"""Sign packing and the SparseInfer predictor rule (Eq. 2), shared by every backend.

Bit order: element ``j`` of a row lands in word ``j // 32`` at bit ``j % 32`` (least significant
bit first). A set bit means the float's sign bit is set, so ``-0.0`` (and a negative NaN) count as
negative. When ``d`` is not a multiple of 32 the pad bits of the last word are 0 in the weight
signs *and* in the input signs, so their XOR is 0 and they never add to ``N_neg``; ``N_pos`` is
``d - N_neg`` with the real ``d``.

Words are held as ``int32`` tensors (torch's ``uint32`` has few operations); the bits are the
uint32 words of the design, and numpy/numba code views them as ``uint32``.

Eq. 2 says row ``i`` is predicted sparse iff ``alpha * N_pos < N_neg``. Every backend evaluates it
the same way: the product is taken in float32 (``float32(alpha) * float32(N_pos)``, one IEEE
rounding), and since the left side falls and the right side rises with ``N_neg`` the rule is
``N_neg >= nneg_threshold(alpha, d)`` with an integer computed once per call on the host. Kernels
compare integers only, so masks agree bit for bit across backends.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

_ROW_CHUNK = 4096  # rows packed at a time (bounds the int64 temporaries to ~64 MiB at d=4096)


def n_words(d: int) -> int:
    """Number of uint32 words for a row of ``d`` signs."""
    return (d + 31) // 32


def pack_signs(t: torch.Tensor) -> torch.Tensor:
    """Sign bits of a (..., d) float tensor packed into (..., ceil(d/32)) int32 words, same device."""
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"pack_signs: unsupported dtype {t.dtype}")
    lead, d = t.shape[:-1], t.shape[-1]
    nw = n_words(d)
    flat = t.reshape(-1, d)
    out = torch.empty((flat.shape[0], nw), dtype=torch.int32, device=t.device)
    shifts = torch.arange(32, dtype=torch.int64, device=t.device)
    for r0 in range(0, flat.shape[0], _ROW_CHUNK):
        bits = torch.signbit(flat[r0 : r0 + _ROW_CHUNK]).to(torch.int64)
        if nw * 32 != d:
            bits = torch.nn.functional.pad(bits, (0, nw * 32 - d))  # pad bits are 0 (positive)
        words = (bits.view(-1, nw, 32) << shifts).sum(-1)  # in [0, 2**32)
        words = torch.where(words >= 2**31, words - 2**32, words)
        out[r0 : r0 + _ROW_CHUNK] = words.to(torch.int32)
    return out.view(*lead, nw)


def popcount_words(words: torch.Tensor) -> torch.Tensor:
    """Per-word popcount of an int32 tensor (SWAR in int64), as int64."""
    v = words.to(torch.int64) & 0xFFFFFFFF
    v = v - ((v >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F
    return ((v * 0x01010101) & 0xFFFFFFFF) >> 24


def count_negative(sign_w: torch.Tensor, sign_x: torch.Tensor) -> torch.Tensor:
    """N_neg for every (input row, weight row): (B, k) int64 from (k, nw) and (B, nw) words."""
    out = torch.empty((sign_x.shape[0], sign_w.shape[0]), dtype=torch.int64, device=sign_w.device)
    step = max(1, (1 << 22) // max(1, sign_w.shape[1] * sign_x.shape[0]))
    for r0 in range(0, sign_w.shape[0], step):
        xor = sign_w[None, r0 : r0 + step, :] ^ sign_x[:, None, :]
        out[:, r0 : r0 + step] = popcount_words(xor).sum(-1)
    return out


def check_alpha(alpha: float) -> float:
    """alpha must be a finite number >= 0 (Eq. 2's coefficient)."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number, got {alpha!r}") from None
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
    return a


def is_predicted_sparse(alpha: float, n_neg: int, d: int) -> bool:
    """Eq. 2 for one row, literally, in float32: ``alpha * N_pos < N_neg``."""
    return bool(np.float32(alpha) * np.float32(d - n_neg) < np.float32(n_neg))


@functools.lru_cache(maxsize=4096)
def nneg_threshold(alpha: float, d: int) -> int:
    """Smallest N_neg in [0, d] that Eq. 2 calls sparse (d + 1 if none): the integer every kernel uses."""
    a = check_alpha(alpha)
    if d <= 0:
        raise ValueError(f"d must be positive, got {d}")
    lo, hi = 0, d + 1  # answer in [lo, hi]; hi = d + 1 means "never"
    while lo < hi:
        mid = (lo + hi) // 2
        if is_predicted_sparse(a, mid, d):
            hi = mid
        else:
            lo = mid + 1
    return lo
