"""The sparse MLP as one opaque torch custom op, so a decode step can be compiled (`torch.compile`)
around it.

Inside a compiled graph each SparseMLP calls ``torch.ops.sparseinfer_dse.mlp_step(x, slot)``; the op
looks the layer up by its slot and runs its eager forward (the Numba kernels, or the original module
when the layer's level is dense), reading the layer's level and switches at run time. So one
compiled graph serves every profile and every variant: `set_profile` and `configure` need no
recompilation. The dense reference (`configure(enabled=False)`) is a second graph in which the
original MLP is compiled with the rest (torch.compile guards on the switch and keeps both), so the
speedup is measured against a fully compiled dense step, not against eager MLPs inside the op.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

_LAYERS: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
_next_slot = [0]


def register(layer: Any) -> int:
    """A process-wide slot for `layer` (held weakly: an undone handle's layers go away)."""
    slot = _next_slot[0]
    _next_slot[0] += 1
    _LAYERS[slot] = layer
    return slot


@torch.library.custom_op("sparseinfer_dse::mlp_step", mutates_args=())
def mlp_step(x: torch.Tensor, slot: int) -> torch.Tensor:
    layer = _LAYERS.get(slot)
    if layer is None:
        raise RuntimeError(f"sparse MLP slot {slot} is gone (the model was un-sparsified after compiling)")
    return layer.eager_forward(x)  # a fresh tensor: never x itself (a custom op may not alias its input)


@mlp_step.register_fake
def _(x: torch.Tensor, slot: int) -> torch.Tensor:
    return torch.empty_like(x)
