"""Per-layer decode sparsity: one set of counts and one way to turn them into fractions.

Every per-layer figure the tool reports (the engine's counters, the latency run's layer table, the
predictor analysis, the sparsity check of a plain model) is a `LayerCounts` read by `fractions()`.
Counts are sums over the decode tokens a layer saw of its k intermediate rows, by fate. They come
from two sources: masks observed from a dense gate product (`observe`: exact zeros, predicted,
both) or the SparseInfer kernels' own counters (`add_kernel`: predicted, zeros caught by actual
sparsity, rows computed).

`DecodeSparsityHooks` counts on any model with gated MLPs (dense, unsparsified): at every decode
call (one new token per sequence) the zeros of act(gate(x)) and, with an alpha, the sign
predictor's mask (Eq. 2). `decode_sparsity` runs it over a dense greedy decode of prompts,
`continuation_sparsity` over given continuations, teacher-forced.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from sparseinfer_dse.engine.decode import prepare_workload, teacher_forced
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.models.discovery import discover_mlps
from sparseinfer_kernels.signs import count_negative, nneg_threshold, pack_signs


COUNTS = ("tokens", "zero", "predicted", "hit", "gained", "computed")  # the summed fields of LayerCounts


@dataclass
class LayerCounts:
    """Rows by fate over the decode tokens one layer saw (every count sums over tokens)."""

    k: int
    tokens: int = 0
    zero: int = 0  # activation exactly zero (observed)
    predicted: int = 0  # predicted sparse by the sign predictor
    hit: int = 0  # predicted sparse and zero (observed)
    gained: int = 0  # not predicted but came out zero: skipped by actual sparsity (kernel)
    computed: int = 0  # rows the kernel computed (kernel)
    observed: bool = False  # zero/hit were counted from masks
    kernel: bool = False  # gained/computed came from kernel counters

    def observe(self, zero: torch.Tensor, predicted: Optional[torch.Tensor] = None) -> None:
        """Count one call from boolean masks [tokens, k]: exact zeros and (optionally) the prediction."""
        self.observed = True
        self.tokens += zero.shape[0]
        self.zero += int(zero.sum())
        if predicted is not None:
            self.predicted += int(predicted.sum())
            self.hit += int((predicted & zero).sum())

    def add_kernel(self, tokens: int, counters: Any) -> None:
        """Count one kernel call from its per-token counters (predicted / actual sparse, computed)."""
        self.kernel = True
        self.tokens += tokens
        self.predicted += int(counters.predicted_sparse.sum())
        self.gained += int(counters.actual_sparse.sum())
        self.computed += int(counters.rows_computed.sum())

    def minus(self, before: "LayerCounts") -> "LayerCounts":
        """The counts added since `before` (a copy taken earlier)."""
        out = LayerCounts(self.k, observed=self.observed, kernel=self.kernel)
        for name in COUNTS:
            setattr(out, name, getattr(self, name) - getattr(before, name))
        return out

    def copy(self) -> "LayerCounts":
        return LayerCounts(**{f.name: getattr(self, f.name) for f in fields(self)})

    def fractions(self) -> dict[str, Any]:
        """Tokens and the fractions of all rows (0.0 when no token was seen); precision and recall
        are None where their denominator is 0. Observed counts give relu_sparsity, precision, recall,
        as_gained and skipped (predicted or zero); kernel counts give actual_sparsity and skipped."""
        rows = max(self.tokens * self.k, 1)
        out: dict[str, Any] = {"tokens": self.tokens, "predicted_sparsity": self.predicted / rows}
        if self.observed:
            missed = self.zero - self.hit  # zero rows the predictor missed: actual sparsity catches them
            out.update(relu_sparsity=self.zero / rows, precision=ratio(self.hit, self.predicted),
                       recall=ratio(self.hit, self.zero), as_gained=missed / rows,
                       skipped=(self.predicted + missed) / rows)
        if self.kernel:
            out.update(actual_sparsity=self.gained / rows,
                       skipped=1.0 - self.computed / rows if self.tokens else 0.0)
        return out


def ratio(a: int, b: int) -> Optional[float]:
    return a / b if b else None


def predicted_mask(signs: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """SparseInfer's sign predictor (Eq. 2) for x [tokens, d] against packed gate sign words."""
    return count_negative(signs, pack_signs(x)) >= nneg_threshold(alpha, x.shape[-1])


class DecodeSparsityHooks:
    """Forward pre-hooks on every gated MLP of a plain model, counting at decode calls only.

    Use as a context manager around decoding; `rows()` gives one row per layer: `layer` and the
    observed fractions (`relu_sparsity`, and with `alpha` the `predicted_sparsity`, `precision`,
    `recall` of the sign predictor at that alpha).
    """

    def __init__(self, model: nn.Module, alpha: Optional[float] = None) -> None:
        self.mlps = discover_mlps(model)
        self.alpha = alpha
        self.counts = [LayerCounts(m.k) for m in self.mlps]
        self._signs = [pack_signs(m.gate.weight) for m in self.mlps] if alpha is not None else None
        self._handles: list[Any] = []

    def __enter__(self) -> "DecodeSparsityHooks":
        self._handles = [m.module.register_forward_pre_hook(self._hook(i)) for i, m in enumerate(self.mlps)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, i: int):
        @torch.no_grad()
        def fn(module: nn.Module, args: Any) -> None:
            x = args[0]
            if x.dim() != 3 or x.shape[1] != 1:  # prefill: not a decode step
                return
            x2 = x.reshape(-1, x.shape[-1])
            m = self.mlps[i]
            zero = m.module.act_fn(m.gate(x2)) == 0
            pred = predicted_mask(self._signs[i], x2, self.alpha) if self._signs is not None else None
            self.counts[i].observe(zero, pred)
        return fn

    def rows(self) -> list[dict[str, Any]]:
        return [{"layer": i, **c.fractions()} for i, c in enumerate(self.counts)]


def decode_sparsity(model: nn.Module, tokenizer: Any, prompts: Optional[Sequence[str]] = None, tokens: int = 8,
                    alpha: Optional[float] = 1.0) -> list[dict[str, Any]]:
    """Per layer, over the `tokens` decode steps of a dense greedy run of each prompt (default: two
    built-in GSM8K-style questions): the ReLU sparsity (fraction of MLP activations exactly 0) and,
    at `alpha`, the sign predictor's predicted sparsity, precision and recall against those zeros."""
    with DecodeSparsityHooks(model, alpha) as hooks:
        prepare_workload(model, tokenizer, prompts or gsm8k_prompts(2), tokens + 1)
    return hooks.rows()


def continuation_sparsity(model: nn.Module, samples: Iterable[tuple[Sequence[int], Sequence[int]]],
                          alpha: Optional[float] = None) -> list[dict[str, Any]]:
    """Per layer, over the decode positions of (prompt ids, continuation ids) samples: the prompt is
    prefilled, then c_0 .. c_{L-2} are fed one per decode step (teacher-forced), so the positions
    counted are those incremental decoding of the continuation runs. Samples with fewer than 2
    continuation tokens have no such position and are skipped."""
    with DecodeSparsityHooks(model, alpha) as hooks:
        for p, c in samples:
            if len(c) >= 2:
                teacher_forced(model, [(list(p), list(c))], pad=0)
    return hooks.rows()
