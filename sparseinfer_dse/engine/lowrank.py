"""R-Sparse's low-rank remainder: the top singular triplets of each MLP projection's weight.

For W (n_out, n_in) = U S V^T the remainder of rank r is kept as two factors, ``a = diag(S_r)
V_r^T`` (r, n_in) and ``u = U_r`` (n_out, r) (the kernels' ``prepare_lowrank`` takes them as they
are), so ``U_r S_r V_r^T x = u (a x)``. One SVD per projection at the largest rank a model will
use; any smaller rank is a leading slice. The SVD is exact (LAPACK, float64) when the smaller side
is at most EXACT_UP_TO, randomized (`torch.svd_lowrank`, oversampled, four power iterations) for
larger weights, where the exact one would take minutes per matrix on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from sparseinfer_dse.models.discovery import GatedMLP

PROJECTIONS = ("gate", "up", "down")
EXACT_UP_TO = 2048
OVERSAMPLE = 16


@torch.no_grad()
def svd_factors(weight: torch.Tensor, rank: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, u): float32 CPU factors of the best rank-`rank` approximation of `weight` (n_out, n_in)."""
    w = weight.detach().to("cpu", torch.float64)
    r = min(rank, *w.shape)
    if min(w.shape) <= EXACT_UP_TO:
        U, S, Vh = torch.linalg.svd(w, full_matrices=False)
        U, S, V = U[:, :r], S[:r], Vh[:r].t()
    else:
        torch.manual_seed(seed)
        U, S, V = torch.svd_lowrank(w, q=min(r + OVERSAMPLE, *w.shape), niter=4)
        U, S, V = U[:, :r], S[:r], V[:, :r]
    return (S[:, None] * V.t()).float().contiguous(), U.float().contiguous()


@dataclass
class LowRankFactors:
    """Every layer's factors at `max_rank`: factors[layer][projection] = (a, u), float32 on the CPU."""

    max_rank: int
    factors: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]

    @property
    def num_layers(self) -> int:
        return len(self.factors)

    def at(self, layer: int, rank: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The layer's factors truncated to `rank` (<= max_rank): leading rows of a, columns of u."""
        if rank > self.max_rank:
            raise ValueError(f"rank {rank} is above the {self.max_rank} these factors were computed for")
        return {p: (a[:rank], u[:, :rank]) for p, (a, u) in self.factors[layer].items()}


def compute_factors(mlps: Sequence[GatedMLP], max_rank: int,
                    progress: Optional[Callable[[int], None]] = None) -> LowRankFactors:
    """The factors of every layer's gate, up and down at `max_rank` (progress(1) per layer)."""
    out = []
    for m in mlps:
        out.append({p: svd_factors(lin.weight, max_rank) for p, lin in zip(PROJECTIONS, (m.gate, m.up, m.down))})
        if progress is not None:
            progress(1)
    return LowRankFactors(max_rank, out)
