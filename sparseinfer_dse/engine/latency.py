"""Per-token decode latency, batch 1, dense vs SparseInfer variants interleaved in one run.

The measurement the search relies on. For each prompt the prefill runs once (dense, as always) and
its KV cache is kept; the token sequence every variant decodes is fixed beforehand (the dense
model's greedy continuation), so dense and sparse do identical work and are fed identical tokens
(teacher forcing). Each timed run copies the prefill cache and decodes those tokens one at a time
with a manual KV-cache loop, synchronising the device before every clock read. Runs of dense and
of every variant alternate (rotating order) within each round, so drifts in machine load hit all of
them alike; figures are per-token medians with p10/p90, and the speedup of a variant is the dense
median over its median (also given paired: the median over runs of the dense/variant ratio of the
same prompt in the same round).

`measure_decode_latency(handle, tokenizer, prompts, tokens=N, repeats=R, variants=[...])` is the
entry point; `decode.prepare_workload` builds the prefill caches and token sequences once so a
search can reuse them across profiles (prefill is dense, so it does not depend on the profile).
`latency_table.format_table` prints a result.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from sparseinfer_dse.engine.compiled_decode import CompiledDecoder
from sparseinfer_dse.engine.decode import Workload, device_sync, prepare_workload, replay
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.sparsify import SparsifiedModel
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.machine import thread_counts
from sparseinfer_dse.stats import median_interval
from sparseinfer_dse.models.discovery import decoder_layers

# The four SparseInfer variants of the paper's Fig. 4 (kernel fusion x actual sparsity).
VARIANTS: dict[str, dict[str, bool]] = {
    "kf+as": {"fused": True, "actual_sparsity": True},
    "kf": {"fused": True, "actual_sparsity": False},
    "as": {"fused": False, "actual_sparsity": True},
    "plain": {"fused": False, "actual_sparsity": False},
}
MAIN_VARIANT = "kf+as"
FIG4_LABELS = {"kf+as": "SparseInfer+KF+AS", "kf": "SparseInfer+KF", "as": "SparseInfer+AS", "plain": "SparseInfer"}


def _summary(ms: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else [ms[0]] * 9
    med = statistics.median(ms)
    return {"ms_per_token": med, "p10_ms": qs[0], "p90_ms": qs[8], "mean_ms": statistics.fmean(ms),
            "tokens_per_s": 1e3 / med if med > 0 else float("inf"), "timed_tokens": len(ms)}


class _MLPTimer:
    """Forward hooks timing every decoder MLP module (device-synchronised): total ms per call group."""

    def __init__(self, modules: Iterable[nn.Module], device: torch.device) -> None:
        self.device, self.total_ms, self._t0 = device, 0.0, 0.0
        self._handles = []
        for m in modules:
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))

    def _pre(self, module: nn.Module, args: Any) -> None:
        device_sync(self.device)
        self._t0 = time.perf_counter()

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        device_sync(self.device)
        self.total_ms += (time.perf_counter() - self._t0) * 1e3

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _apply(handle: Any, name: str) -> None:
    if name == "dense":
        handle.configure(enabled=False)
    else:
        handle.configure(enabled=True, predict=True, **VARIANTS[name])


def _collect_layers(handle: Any, model: nn.Module, workload: Workload, variant: str) -> list[dict[str, Any]]:
    """One untimed decode of every prompt with counters: per layer, the sparsity at the profile
    (predicted, extra caught by AS, rows skipped) and the ReLU sparsity itself (no prediction)."""
    out: list[dict[str, Any]] = [
        {"layer": l.index, "alpha": l.alpha, "k": l.k} for l in handle.layers
    ]
    for mode, switches in (("profile", {**VARIANTS[variant], "predict": True}),
                           ("relu", {"fused": True, "actual_sparsity": True, "predict": False})):
        before = [l.stats.counts.copy() for l in handle.layers]
        with handle.options_set(enabled=True, collect=True, **switches):
            for run in workload.runs:
                replay(model, run, workload.device, workload.decoder)
        for row, b, layer in zip(out, before, handle.layers):
            f = layer.stats.counts.minus(b).fractions()
            if mode == "relu":  # no prediction: every zero row is caught by actual sparsity
                row["relu_sparsity"] = f.get("actual_sparsity", 0.0)
            else:  # alpha None: the layer ran its dense module, no kernel counted anything (all 0)
                row.update(tokens=f["tokens"], predicted_sparsity=f["predicted_sparsity"],
                           actual_sparsity=f.get("actual_sparsity", 0.0), skipped=f.get("skipped", 0.0))
    return out


def measure_decode_latency(target: Any, tokenizer: Any = None, prompts: Optional[Sequence[str]] = None, *,
                           tokens: int = 32, repeats: int = 3, variants: Sequence[str] = (MAIN_VARIANT,),
                           warmup: int = 1, workload: Optional[Workload] = None, include_dense: bool = True,
                           mlp_share: bool = True, collect_sparsity: bool = True,
                           progress: bool = False, compile: bool = False) -> dict[str, Any]:
    """Per-token decode latency (batch 1) of dense and SparseInfer variants, interleaved.

    `target` is a SparsifiedModel handle (from `sparsify`) or a plain transformers model (dense only).
    `variants` are keys of VARIANTS (`kf+as`, `kf`, `as`, `plain`: fused kernel x actual sparsity);
    the profile is whatever the handle holds. `prompts` default to 2 built-in GSM8K-style questions.
    `warmup` untimed runs of the first prompt per variant precede `repeats` rounds over all prompts.
    Returns a dict: `dense_ms_per_token`, `sparse_ms_per_token` (the first variant), `speedup`, p10/p90
    of each, `ratio` (median of the paired per-run sparse/dense ratios, `run_ratios`) with its
    order-statistic 95% interval `ratio_ci_low`/`ratio_ci_high`, `variants` (per-variant figures), `dense_mlp_ms_per_token` and `mlp_share` (a separate
    pass with hooks on the MLP modules), `layers` (per-layer sparsity, one extra untimed decode) and
    the settings. `compile` replays a compiled step on a static cache (`compiled_decode.py`; the
    first warm-up step compiles); the hooked MLP pass always runs eager. The handle's options are restored on return. With the numba-cpu backend run the
    process with OMP_WAIT_POLICY=PASSIVE (see `sparseinfer_dse.openmp`).
    """
    handle = target if isinstance(target, SparsifiedModel) else None
    model = handle.model if handle is not None else target
    if handle is not None and not handle.layers:
        raise UserError("the sparsified model was undone; sparsify it again")
    if handle is None:
        variants, include_dense = (), True
    for v in variants:
        if v not in VARIANTS:
            raise UserError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if repeats < 1:
        raise OptionError("repeats", "{repeats} must be at least 1")
    if workload is None:
        if tokenizer is None:
            raise UserError("a tokenizer is needed to build the prompts")
        workload = prepare_workload(model, tokenizer, prompts or gsm8k_prompts(2), tokens, handle)
    if compile and workload.decoder is None:
        workload.decoder = CompiledDecoder(model, workload.max_len)
    device = workload.device
    if handle is not None and handle.backend == "numba-cpu" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        warnings.warn("OMP_WAIT_POLICY is not PASSIVE: torch's and Numba's OpenMP threads spin after each parallel "
                      "region and slow each other down; start Python with OMP_WAIT_POLICY=PASSIVE", stacklevel=2)
    names = (["dense"] if include_dense else []) + list(variants)
    if not names:
        raise UserError("nothing to measure: no variant and no dense run")
    saved = {k: getattr(handle.options, k) for k in ("enabled", "fused", "actual_sparsity", "predict", "collect")} if handle else {}
    nruns = len(names) * (warmup + repeats * len(workload.runs))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=nruns, unit="run", desc="decode runs", leave=False)
    times: dict[str, list[float]] = {n: [] for n in names}
    run_means: dict[str, list[float]] = {n: [] for n in names}
    hits: dict[str, int] = {n: 0 for n in names}
    try:
        if handle is not None:
            handle.configure(collect=False)
        for _ in range(warmup):
            for name in names:
                if handle is not None:
                    _apply(handle, name)
                replay(model, workload.runs[0], device, workload.decoder)
                if bar:
                    bar.update()
        slot = 0
        for _ in range(repeats):
            for run in workload.runs:
                shift = slot % len(names)
                for name in names[shift:] + names[:shift]:
                    if handle is not None:
                        _apply(handle, name)
                    ms, h = replay(model, run, device, workload.decoder)
                    times[name].extend(ms)
                    run_means[name].append(statistics.fmean(ms))
                    hits[name] += h
                    if bar:
                        bar.update()
                slot += 1
        mlp = _mlp_pass(handle, model, workload, variants[0] if variants else None) if mlp_share else None
        layers = _collect_layers(handle, model, workload, variants[0]) if (collect_sparsity and handle and variants) else None
    finally:
        if bar:
            bar.close()
        if handle is not None:
            handle.configure(**saved)

    steps_with_next = sum(max(r.tokens.shape[0] - 1, 0) for r in workload.runs) * repeats
    per = {}
    for name in names:
        s = _summary(times[name])
        s["top1_agreement"] = hits[name] / steps_with_next if steps_with_next else None
        if name != "dense":
            s.update(VARIANTS[name])
            s["label"] = FIG4_LABELS[name]
            if include_dense:
                s["speedup"] = per["dense"]["ms_per_token"] / s["ms_per_token"]
                s["speedup_paired"] = statistics.median(
                    d / v for d, v in zip(run_means["dense"], run_means[name]))
                # the paired per-run ratios (variant/dense, same prompt and round) and their median's
                # distribution-free interval: what a latency verdict is judged on (sparseinfer_dse.stats)
                ratios = [v / d for d, v in zip(run_means["dense"], run_means[name])]
                iv = median_interval(ratios)
                s.update(run_ratios=[round(r, 6) for r in ratios], ratio=iv.estimate, ratio_ci_low=iv.low,
                         ratio_ci_high=iv.high, ratio_ci_coverage=iv.coverage)
        run_iv = median_interval(run_means[name])  # per-run mean ms/token: this name's own spread
        s.update(run_ms_ci_low=run_iv.low, run_ms_ci_high=run_iv.high, runs=len(run_means[name]))
        per[name] = s
    res: dict[str, Any] = {
        "tokens": workload.tokens,
        "prompts": len(workload.runs),
        "prompt_tokens": [int(r.input_ids.shape[1]) for r in workload.runs],
        "repeats": repeats,
        "warmup": warmup,
        "device": str(device),
        "backend": handle.backend if handle else None,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "threads": thread_counts(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "profile": _profile_info(handle),
        "compiled": workload.decoder is not None,
    }
    if include_dense:
        d = per["dense"]
        res.update(dense_ms_per_token=d["ms_per_token"], dense_p10_ms=d["p10_ms"], dense_p90_ms=d["p90_ms"],
                   dense_run_ms_ci_low=d["run_ms_ci_low"], dense_run_ms_ci_high=d["run_ms_ci_high"])
    if variants:
        v = per[variants[0]]
        res.update(sparse_variant=variants[0], sparse_ms_per_token=v["ms_per_token"], sparse_p10_ms=v["p10_ms"],
                   sparse_p90_ms=v["p90_ms"])
        if include_dense:
            res.update(speedup=v["speedup"], speedup_paired=v["speedup_paired"], ratio=v["ratio"],
                       ratio_ci_low=v["ratio_ci_low"], ratio_ci_high=v["ratio_ci_high"], run_ratios=v["run_ratios"])
    res["dense"] = per.get("dense")
    res["variants"] = {n: per[n] for n in variants}
    if mlp is not None:
        res.update(mlp)
    res["layers"] = layers if variants else None
    return res


def _mlp_pass(handle: Any, model: nn.Module, workload: Workload, variant: Optional[str]) -> dict[str, Any]:
    """Time the MLP modules with hooks during one extra decode of every prompt, dense and (with a
    handle) sparse: MLP ms per token and its share of the step (the step time of this same pass)."""
    mods = [layer.mlp for layer in decoder_layers(model)]
    out: dict[str, Any] = {}
    modes = [("dense", "dense")] + ([("sparse", variant)] if (handle is not None and variant) else [])
    for key, name in modes:
        if handle is not None:
            _apply(handle, name)
        timer = _MLPTimer(mods, workload.device)
        step_ms, n = 0.0, 0
        try:
            for run in workload.runs:
                ms, _ = replay(model, run, workload.device)
                step_ms += sum(ms)
                n += len(ms)
        finally:
            timer.remove()
        out[f"{key}_mlp_ms_per_token"] = timer.total_ms / n
        out[f"{key}_step_ms_per_token_hooked"] = step_ms / n
        out[f"{key}_mlp_share"] = timer.total_ms / step_ms if step_ms else None
    out["mlp_share"] = out["dense_mlp_share"]
    return out


def _profile_info(handle: Any) -> Optional[dict[str, Any]]:
    if handle is None or handle.profile is None:
        return None
    p = handle.profile
    return {"name": p.name, "alphas": list(p.levels)}
