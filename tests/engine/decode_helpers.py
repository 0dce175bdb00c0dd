"""Decode-step helpers shared by the engine's method tests: the model's logits for the last token
of `ids` after a dense prefill, and the same with some layers' MLP replaced by plain torch math."""

from __future__ import annotations

from typing import Callable

import torch

from sparseinfer_dse.engine.decode import prefill, step


def decode_logits(lm, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        _, cache = prefill(lm.model, ids[:, :-1])
        logits, _ = step(lm.model, ids[:, -1:], cache)
    return logits.float()


def decode_logits_with(lm, ids: torch.Tensor, mlp_math: dict[int, Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """decode_logits with layer i's MLP computed by mlp_math[i] (float32 (N, d) -> (N, d)) on decode
    steps; prefill stays the model's own."""
    def hook(fn):
        def run(mod, args, out):
            x = args[0]
            if x.shape[1] != 1:
                return out
            return fn(x.float().reshape(-1, x.shape[-1])).view_as(out).to(out.dtype)
        return run

    hooks = [lm.mlps[i].module.register_forward_hook(hook(fn)) for i, fn in mlp_math.items()]
    try:
        return decode_logits(lm, ids)
    finally:
        for h in hooks:
            h.remove()
