"""A decode step without the Python cost of eager Hugging Face modules: a static KV cache and the
whole step compiled with `torch.compile`, replayed per token.

Eager decoding of a small model is mostly Python: on SmolLM2-135M (30 layers, 2-core CPU) the
non-MLP part of an eager step takes about 30 ms, of which the attention and LM-head weights need
about 10 ms to stream. Compiling the step removes most of the rest, for dense and sparse alike: the
sparse MLP enters the graph as one opaque custom op (`mlp_op.py`) that reads the layer's level and
switches at run time, so every variant and every profile replay the same compiled code; the dense
reference is a second graph with the original MLPs compiled in. The first step of each compiles
(about a minute each for SmolLM2 on 2 cores; inductor's on-disk cache makes later processes faster).

`CompiledDecoder(model, max_len)` (torch.compile's `backend`, inductor by default) holds one
StaticCache for the model; `load(cache)` copies a prefill's (dynamic) KV cache into it, `step(ids)`
runs the compiled step at the next position and returns its logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import StaticCache

from sparseinfer_dse.engine.decode import cache_keyword


class CompiledDecoder:
    """One static KV cache and one compiled decode step (batch 1) for `model`."""

    def __init__(self, model: nn.Module, max_len: int, backend: Any = "inductor") -> None:
        self.model = model
        self.max_len = max_len
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self._keyword = cache_keyword(model)
        self._compiled = torch.compile(self._eager_step, dynamic=False, backend=backend)
        self.length = 0

    def _eager_step(self, ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, cache_position=position, use_cache=True, **{self._keyword: self.cache})
        return out.logits[:, -1]

    def load(self, cache: Any) -> None:
        """Start from a prefill's KV cache (any transformers Cache with `layers` of keys/values)."""
        self.cache.reset()
        length = 0
        for i, layer in enumerate(cache.layers):
            self.cache.update(layer.keys, layer.values, i)
            length = layer.keys.shape[-2]
        self.length = length

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Decode one token (ids (1, 1)) at the next position; returns logits (1, V)."""
        if self.length >= self.max_len:
            raise ValueError(f"the static cache holds {self.max_len} positions; all are used")
        position = torch.tensor([self.length], device=ids.device)
        self.length += 1
        return self._compiled(ids, position)
