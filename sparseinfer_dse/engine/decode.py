"""Decoding as the engine sees it: a dense prefill, then one token per sequence per step with the
KV cache, so every step is a decode call of the sparse MLPs.

Two teacher-forced forms share `prefill` and `step`:

* `prepare_workload` + `replay`: batch 1, for latency. The prefill cache is kept and every replay
  decodes the fixed token sequence (the dense greedy continuation) from a copy of it, with the
  device synchronised around each step's clock reads and the garbage collector off.
* `teacher_forced`: a batch of (prompt ids, continuation ids), left-padded prefill, then the
  continuation fed one token per step with attention mask and position ids; the log-probs of each
  next continuation token go to a callback (the fidelity proxies).
"""

from __future__ import annotations

import copy
import gc
import inspect
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from sparseinfer_dse.errors import OptionError


def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_of(target: Any) -> nn.Module:
    """The nn.Module of a SparsifiedModel handle, a LoadedModel or a model."""
    if isinstance(target, nn.Module):
        return target
    inner = getattr(target, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    raise TypeError(f"expected a model, a LoadedModel or a SparsifiedModel, not {type(target).__name__}")


def dense(target: Any) -> Any:
    """A context in which `target` runs dense: a handle's engine switched off, else nothing."""
    return target.options_set(enabled=False) if hasattr(target, "options_set") else nullcontext()


def pad_id(tokenizer: Any) -> int:
    """The id fed at padded positions: pad, else eos, else bos, else 0."""
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        v = getattr(tokenizer, attr, None)
        if v is not None:
            return int(v)
    return 0


def prefill(model: nn.Module, ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
            position_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Any]:
    """The prompt in one pass (the MLPs run dense): (last position's logits [B, V], KV cache)."""
    out = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True)
    return out.logits[:, -1], _cache_of(out)


def step(model: nn.Module, ids: torch.Tensor, cache: Any, attention_mask: Optional[torch.Tensor] = None,
         position_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Any]:
    """One decode step, ids [B, 1]: (logits [B, V], the extended cache)."""
    out = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                **{cache_keyword(model): cache})
    return out.logits[:, -1], _cache_of(out)


def cache_keyword(model: nn.Module) -> str:
    """The KV-cache keyword of the model's forward: `cache` (transformers >= 5.2x), else the older
    `past_key_values` (which the newer versions still take, with a FutureWarning per call)."""
    cls = type(model)
    name = _CACHE_ARG.get(cls)
    if name is None:
        name = "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"
        _CACHE_ARG[cls] = name
    return name


_CACHE_ARG: dict[type, str] = {}


def _cache_of(out: Any) -> Any:
    """The returned KV cache, under the output's current name (`cache`) or the older one."""
    keys = out.keys() if hasattr(out, "keys") else ()
    return out["cache"] if "cache" in keys else out.past_key_values


# ---------------------------------------------------------------------------------------------
# batch 1: the latency workload


@dataclass
class PromptRun:
    """One prompt: its ids, the KV cache after the dense prefill, and the tokens decoded after it."""

    prompt: str
    input_ids: torch.Tensor  # (1, T)
    cache: Any
    tokens: torch.Tensor  # (N,) fed one per decode step; tokens[0] is the prefill's greedy token


@dataclass
class Workload:
    runs: list[PromptRun]
    tokens: int
    device: torch.device
    prefill_s: list[float] = field(default_factory=list)
    decoder: Any = None  # a CompiledDecoder when the runs replay a compiled step (compiled_decode.py)

    @property
    def max_len(self) -> int:
        """The longest prompt plus the decoded tokens: the positions a static cache needs."""
        return max(r.input_ids.shape[1] for r in self.runs) + self.tokens


@torch.inference_mode()
def prepare_workload(model: nn.Module, tokenizer: Any, prompts: Sequence[str], tokens: int,
                     handle: Any = None) -> Workload:
    """Prefill every prompt (dense) and fix the `tokens` token ids each decode run will be fed: the
    model's dense greedy continuation. With a handle, decoding runs dense (`enabled=False`) here.
    Set the result's `decoder` (compiled_decode.CompiledDecoder) to replay its runs compiled."""
    if tokens < 1:
        raise OptionError("tokens", "{tokens} must be at least 1")
    device = model_device(model)
    runs, prefill_s = [], []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
        device_sync(device)
        t0 = time.perf_counter()
        logits, cache = prefill(model, ids)
        device_sync(device)
        prefill_s.append(time.perf_counter() - t0)
        seq = [logits[0].argmax()]
        work = copy.deepcopy(cache)
        with dense(handle):
            for _ in range(tokens - 1):
                logits, work = step(model, seq[-1].view(1, 1), work)
                seq.append(logits[0].argmax())
        runs.append(PromptRun(prompt, ids, cache, torch.stack(seq)))
    return Workload(runs, tokens, device, prefill_s)


@torch.inference_mode()
def replay(model: nn.Module, run: PromptRun, device: torch.device, decoder: Any = None) -> tuple[list[float], int]:
    """Decode run.tokens teacher-forced from a copy of the prefill cache: (ms per step, top-1 hits).

    Each step is clocked between two device synchronisations, with the garbage collector off. A
    hit is a step whose argmax equals the next token of the dense greedy sequence (the last step has
    no next token and is not counted). With a `decoder` (CompiledDecoder) the steps run compiled on
    its static cache, loaded from the prefill's."""
    cache = copy.deepcopy(run.cache) if decoder is None else None
    if decoder is not None:
        decoder.load(run.cache)
    toks = run.tokens
    times, hits = [], 0
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(toks.shape[0]):
            device_sync(device)
            t0 = time.perf_counter()
            if decoder is None:
                logits, cache = step(model, toks[i].view(1, 1), cache)
            else:
                logits = decoder.step(toks[i].view(1, 1))
            device_sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
            if i + 1 < toks.shape[0]:
                hits += int(logits[0].argmax() == toks[i + 1])
    finally:
        if gc_was:
            gc.enable()
    return times, hits


# ---------------------------------------------------------------------------------------------
# batched: prompt + reference continuation


@torch.no_grad()
def teacher_forced(model: nn.Module, batch: Sequence[tuple[list[int], list[int]]], pad: int,
                   consume: Optional[Callable[[int, int, torch.Tensor], None]] = None) -> None:
    """Prefill the prompts (left-padded), then feed continuation tokens one per decode step.

    After feeding c_t (t = 0..L-2) the model's log-probs for c_{t+1} are passed to
    consume(sample_index_in_batch, t, logprobs[V]) for every sample that has a c_{t+1}. Samples
    whose continuation ended are fed `pad` (masked out) while the others go on.
    """
    device = model_device(model)
    B = len(batch)
    P = max(len(p) for p, _ in batch)
    ids = torch.full((B, P), pad, dtype=torch.long)
    attn = torch.zeros((B, P), dtype=torch.long)
    for i, (p, _) in enumerate(batch):
        ids[i, P - len(p):] = torch.tensor(p)
        attn[i, P - len(p):] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    ids, attn, pos = ids.to(device), attn.to(device), pos.to(device)
    _, cache = prefill(model, ids, attn, pos)
    next_pos = attn.sum(-1)
    L = max(len(c) for _, c in batch)
    for t in range(L - 1):
        valid = torch.tensor([t < len(c) - 1 for _, c in batch], dtype=torch.long, device=device)
        tok = torch.tensor([[c[t] if t < len(c) - 1 else pad] for _, c in batch], dtype=torch.long, device=device)
        attn = torch.cat([attn, valid[:, None]], dim=1)
        logits, cache = step(model, tok, cache, attn, next_pos[:, None])
        next_pos = next_pos + 1
        if consume is None:
            continue
        logp = torch.log_softmax(logits.float(), dim=-1)
        for i in range(B):
            if valid[i]:
                consume(i, t, logp[i])
