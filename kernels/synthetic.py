"""Synthetic MLP weights and decode inputs with a chosen activation sparsity (benchmarks, tests).

Sparsity is built into the data, never faked in a mask: each gate row ``i`` gets a probability
``p_i`` that an element's sign *disagrees* with the sign of ``x``. Rows meant to be sparse get
``p_i`` a little above 1/2 (more negative products, so ``g_i < 0`` and the sign predictor sees
it), the others a little below. Rows with ``p_i`` close to 1/2 are the ones the predictor may
miss and actual sparsity catches, as in real ReLU-fied models. Magnitudes are Gaussian.
"""

from __future__ import annotations

import torch


def synthetic_mlp(d: int, k: int, sparsity: float, dtype: torch.dtype = torch.float32, batch: int = 1,
                  seed: int = 0, margin: float = 0.02, spread: float = 0.10):
    """(w_gate (k,d), w_up (k,d), w_down (d,k), x (batch,d)) with `sparsity` of the gate rows negative
    (on average over rows, exactly so for the float32 values of the first input row).

    Sparse rows draw ``p_i`` from ``[0.5 + margin/2, 0.5 + margin/2 + spread]``, dense rows the
    mirror image below 1/2. Extra input rows (batch > 1) flip 5% of the signs of the first one, so
    every row has its own mask at about the same sparsity.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(d, generator=gen)
    xs = [x0]
    for _ in range(1, batch):
        flip = torch.rand(d, generator=gen) < 0.05
        xs.append(torch.where(flip, -x0, x0))
    x = torch.stack(xs)
    is_sparse = torch.rand(k, generator=gen) < sparsity
    off = margin / 2 + spread * torch.rand(k, generator=gen)
    p = torch.where(is_sparse, 0.5 + off, 0.5 - off)
    scale = d**-0.5
    w_gate = torch.empty(k, d)
    step = 1024
    sx = torch.sign(x0)
    for r0 in range(0, k, step):
        r1 = min(k, r0 + step)
        disagree = torch.rand(r1 - r0, d, generator=gen) < p[r0:r1, None]
        mag = torch.randn(r1 - r0, d, generator=gen).abs_().mul_(scale)
        w_gate[r0:r1] = torch.where(disagree, -sx, sx) * mag
    # Make the sign of g follow the plan exactly for the first input row: a row that came out on the
    # wrong side is negated (its sign agreement flips too, so the predictor misses it and actual
    # sparsity catches it, as in real models).
    g = w_gate @ x0
    wrong = torch.where(is_sparse, g >= 0, g < 0)
    w_gate[wrong] = -w_gate[wrong]
    w_up = torch.randn(k, d, generator=gen).mul_(scale)
    w_down = torch.randn(d, k, generator=gen).mul_(k**-0.5)
    return w_gate.to(dtype), w_up.to(dtype), w_down.to(dtype), x.to(dtype)


def random_case(d: int, k: int, batch: int = 1, dtype: torch.dtype = torch.float32, threshold: float = 0.0,
                seed: int = 0, rel_margin: float = 0.01, activation: str = "relu"):
    """Random (w_gate, w_up, w_down, x) for exactness tests: no gate pre-activation of any input row
    lies within ``rel_margin`` (relative to their spread) of 0 or of ``threshold``, so float32
    summation order cannot flip an activation, and for a positive threshold a good share of them
    falls in ``[0, threshold)`` (rows that only actual sparsity catches). ``x`` contains ``-0.0``.

    With ``activation="silu"`` (CATS) the boundary is ``|silu(g)| = threshold`` instead of
    ``g = threshold`` (``g`` still stays away from 0); the ReLU data are unchanged by this option.
    With ``threshold=0.25`` about half of the rows fall under the threshold.
    """
    if activation not in ("relu", "silu"):
        raise ValueError(f"activation must be 'relu' or 'silu', got {activation!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=gen)
    x[:, :: max(1, d // 5)] = -0.0  # signed zeros count as negative signs
    x = x.to(dtype)
    sigma = 4.0 * threshold if threshold > 0 else 1.0  # spread of g
    xn = x.double()
    scale = sigma / float(xn.norm(dim=1).mean())
    margin = rel_margin * sigma
    w_gate = (torch.randn(k, d, generator=gen) * scale).to(dtype)
    for _ in range(200):
        g = w_gate.double() @ xn.t()  # (k, batch), exact enough for the margin test
        near = (g * torch.sigmoid(g)).abs() if activation == "silu" else g  # what is compared with threshold
        bad = ((g.abs() < margin) | ((near - threshold).abs() < margin)).any(dim=1)
        if not bool(bad.any()):
            break
        n_bad = int(bad.sum())
        w_gate[bad] = (torch.randn(n_bad, d, generator=gen) * scale).to(dtype)
    else:  # pragma: no cover - would need an absurd margin
        raise RuntimeError("random_case: could not keep pre-activations away from the boundaries")
    w_up = (torch.randn(k, d, generator=gen) * d**-0.5).to(dtype)
    w_down = (torch.randn(d, k, generator=gen) * k**-0.5).to(dtype)
    w_gate[0, 0] = -0.0  # a signed zero in the weights too
    return w_gate, w_up, w_down, x
