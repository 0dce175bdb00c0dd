"""MLP activations: classify what a checkpoint uses, and FATReLU for ProSparse checkpoints.

SparseInfer needs exact zeros after the activation: ReLU and FATReLU have them, SiLU and GELU do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SPARSE_KINDS = ("relu", "fatrelu")


@dataclass(frozen=True)
class Activation:
    """An MLP activation: kind is relu, fatrelu, silu, gelu or other; threshold is FATReLU's T."""

    kind: str
    threshold: float = 0.0
    name: str = ""

    @property
    def is_sparse(self) -> bool:
        return self.kind in SPARSE_KINDS

    def describe(self) -> str:
        if self.kind == "fatrelu":
            return f"fatrelu(T={self.threshold:g})"
        if self.kind == "other":
            return f"other ({self.name})"
        return self.kind


class FATReLU(nn.Module):
    """act(g) = g if g >= T else 0 (ProSparse's `hidden_act: fatrelu`, `hidden_act_param: T`)."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return torch.where(g >= self.threshold, g, torch.zeros((), dtype=g.dtype, device=g.device))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


_BY_CLASS = {
    "ReLU": "relu",
    "SiLU": "silu",
    "SiLUActivation": "silu",
    "GELU": "gelu",
    "GELUActivation": "gelu",
    "GELUTanh": "gelu",
    "NewGELUActivation": "gelu",
    "FastGELUActivation": "gelu",
    "PytorchGELUTanh": "gelu",
    "QuickGELUActivation": "gelu",
    "AccurateGELUActivation": "gelu",
}


def classify_activation(act_fn: nn.Module) -> Activation:
    """Classify an MLP's activation module (the module, not the config string, is what runs)."""
    if isinstance(act_fn, FATReLU):
        if act_fn.threshold == 0.0:
            return Activation("relu", 0.0, "FATReLU(0)")
        return Activation("fatrelu", act_fn.threshold, "FATReLU")
    cls = type(act_fn).__name__
    return Activation(_BY_CLASS.get(cls, "other"), 0.0, cls)
