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
entry point; `prepare_workload` builds the prefill caches and token sequences once so a search can
reuse them across profiles (prefill is dense, so it does not depend on the profile).
"""

from __future__ import annotations

import copy
import gc
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from sparseinfer_dse.errors import UserError

# The four SparseInfer variants of the paper's Fig. 4 (kernel fusion x actual sparsity).
VARIANTS: dict[str, dict[str, bool]] = {
    "kf+as": {"fused": True, "actual_sparsity": True},
    "kf": {"fused": True, "actual_sparsity": False},
    "as": {"fused": False, "actual_sparsity": True},
    "plain": {"fused": False, "actual_sparsity": False},
}
MAIN_VARIANT = "kf+as"
FIG4_LABELS = {"kf+as": "SparseInfer+KF+AS", "kf": "SparseInfer+KF", "as": "SparseInfer+AS", "plain": "SparseInfer"}

# Used when no --data-dir is given: GSM8K-style questions written for this tool (not GSM8K items).
BUILTIN_QUESTIONS = (
    "A baker makes 48 muffins in the morning and 36 in the afternoon. She sells 5 boxes of 12 muffins. "
    "How many muffins are left at the end of the day?",
    "Tom reads 15 pages on Monday and twice as many pages on Tuesday. His book has 120 pages. How many "
    "pages does he still have to read?",
    "A farmer has 3 fields with 24 rows of corn each. Every row gives 9 ears of corn. He sells the corn "
    "for $2 per dozen ears. How much money does he make?",
    "Maria buys 4 notebooks at $3 each and 2 pens at $1.50 each. She pays with a $20 bill. How much "
    "change does she get?",
    "A train travels 60 miles per hour for 2.5 hours and then 45 miles per hour for 2 hours. How many "
    "miles does it travel in total?",
    "A school has 540 students. One third of them take the bus, and one quarter of the rest walk. How "
    "many students neither take the bus nor walk?",
    "Sam saves $15 every week. After 8 weeks he spends $45 on a game and $20 on a book. How much money "
    "does he have left?",
    "A rectangle garden is 12 meters long and 8 meters wide. A fence costs $7 per meter. How much does "
    "it cost to fence the whole garden?",
)


def gsm8k_prompts(n: int, data_dir: Optional[Path | str] = None) -> list[str]:
    """The first `n` GSM8K test questions from DATA_DIR/gsm8k/test.jsonl, or the built-in ones."""
    from sparseinfer_dse.data.prompts import format_question, load_prompts

    if n < 1:
        raise UserError("--prompts must be at least 1")
    if data_dir is None:
        prompts = [format_question(q) for q in BUILTIN_QUESTIONS[:n]]
    else:
        prompts = load_prompts("gsm8k", n, Path(data_dir))
    if len(prompts) < n:
        raise UserError(f"only {len(prompts)} prompts available, --prompts {n} asked for")
    return prompts


def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _step(model: nn.Module, token: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    out = model(input_ids=token.view(1, 1), past_key_values=cache, use_cache=True)
    return out.logits[0, -1], out.past_key_values


@torch.inference_mode()
def prepare_workload(model: nn.Module, tokenizer: Any, prompts: Sequence[str], tokens: int,
                     handle: Any = None) -> Workload:
    """Prefill every prompt (dense) and fix the `tokens` token ids each decode run will be fed: the
    model's dense greedy continuation. With a handle, decoding runs dense (`enabled=False`) here."""
    if tokens < 1:
        raise UserError("--tokens must be at least 1")
    device = _model_device(model)
    runs, prefill_s = [], []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
        device_sync(device)
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        device_sync(device)
        prefill_s.append(time.perf_counter() - t0)
        cache = out.past_key_values
        seq = [out.logits[0, -1].argmax()]
        work = copy.deepcopy(cache)
        ctx = handle.options_set(enabled=False) if handle is not None else _nullcontext()
        with ctx:
            for _ in range(tokens - 1):
                logits, work = _step(model, seq[-1], work)
                seq.append(logits.argmax())
        runs.append(PromptRun(prompt, ids, cache, torch.stack(seq)))
    return Workload(runs, tokens, device, prefill_s)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


@torch.inference_mode()
def _decode(model: nn.Module, run: PromptRun, device: torch.device) -> tuple[list[float], int]:
    """Decode run.tokens teacher-forced from a copy of the prefill cache: (ms per step, top-1 hits).

    A hit is a step whose argmax equals the next token of the dense greedy sequence (the last step has
    no next token and is not counted)."""
    cache = copy.deepcopy(run.cache)
    toks = run.tokens
    times, hits = [], 0
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(toks.shape[0]):
            device_sync(device)
            t0 = time.perf_counter()
            logits, cache = _step(model, toks[i], cache)
            device_sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
            if i + 1 < toks.shape[0]:
                hits += int(logits.argmax() == toks[i + 1])
    finally:
        if gc_was:
            gc.enable()
    return times, hits


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


def _stats_snapshot(handle: Any) -> list[tuple[int, int, int, int]]:
    return [(l.stats.tokens, l.stats.predicted_sparse, l.stats.actual_sparse, l.stats.rows_computed) for l in handle.layers]


def _collect_layers(handle: Any, model: nn.Module, workload: Workload, variant: str) -> list[dict[str, Any]]:
    """One untimed decode of every prompt with counters: per layer, the sparsity at the profile
    (predicted, extra caught by AS, rows skipped) and the ReLU sparsity itself (no prediction)."""
    out: list[dict[str, Any]] = [
        {"layer": l.index, "alpha": l.alpha, "k": l.k} for l in handle.layers
    ]
    for mode, switches in (("profile", {**VARIANTS[variant], "predict": True}),
                           ("relu", {"fused": True, "actual_sparsity": True, "predict": False})):
        before = _stats_snapshot(handle)
        with handle.options_set(enabled=True, collect=True, **switches):
            for run in workload.runs:
                _decode(model, run, workload.device)
        after = _stats_snapshot(handle)
        for row, b, a, layer in zip(out, before, after, handle.layers):
            tok, pred, act, comp = (a[i] - b[i] for i in range(4))
            rows = max(tok * layer.k, 1)
            if mode == "relu":
                row["relu_sparsity"] = act / rows
            elif tok == 0:  # alpha None: the layer ran its dense module, nothing skipped
                row.update(tokens=0, predicted_sparsity=0.0, actual_sparsity=0.0, skipped=0.0)
            else:
                row.update(tokens=tok, predicted_sparsity=pred / rows, actual_sparsity=act / rows,
                           skipped=1.0 - comp / rows)
    return out


def measure_decode_latency(target: Any, tokenizer: Any = None, prompts: Optional[Sequence[str]] = None, *,
                           tokens: int = 32, repeats: int = 3, variants: Sequence[str] = (MAIN_VARIANT,),
                           warmup: int = 1, workload: Optional[Workload] = None, include_dense: bool = True,
                           mlp_share: bool = True, collect_sparsity: bool = True,
                           progress: bool = False) -> dict[str, Any]:
    """Per-token decode latency (batch 1) of dense and SparseInfer variants, interleaved.

    `target` is a SparsifiedModel handle (from `sparsify`) or a plain transformers model (dense only).
    `variants` are keys of VARIANTS (`kf+as`, `kf`, `as`, `plain`: fused kernel x actual sparsity);
    the profile is whatever the handle holds. `prompts` default to 2 built-in GSM8K-style questions.
    `warmup` untimed runs of the first prompt per variant precede `repeats` rounds over all prompts.
    Returns a dict: `dense_ms_per_token`, `sparse_ms_per_token` (the first variant), `speedup`, p10/p90
    of each, `variants` (per-variant figures), `dense_mlp_ms_per_token` and `mlp_share` (a separate
    pass with hooks on the MLP modules), `layers` (per-layer sparsity, one extra untimed decode) and
    the settings. The handle's options are restored on return. With the numba-cpu backend run the
    process with OMP_WAIT_POLICY=PASSIVE (see `sparseinfer_dse.openmp`).
    """
    from sparseinfer_dse.engine.sparsify import SparsifiedModel

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
        raise UserError("--repeats must be at least 1")
    if workload is None:
        if tokenizer is None:
            raise UserError("a tokenizer is needed to build the prompts")
        workload = prepare_workload(model, tokenizer, prompts or gsm8k_prompts(2), tokens, handle)
    device = workload.device
    if handle is not None and handle.backend == "numba-cpu" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        import warnings

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
                _decode(model, workload.runs[0], device)
                if bar:
                    bar.update()
        slot = 0
        for _ in range(repeats):
            for run in workload.runs:
                shift = slot % len(names)
                for name in names[shift:] + names[:shift]:
                    if handle is not None:
                        _apply(handle, name)
                    ms, h = _decode(model, run, device)
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
    }
    if include_dense:
        d = per["dense"]
        res.update(dense_ms_per_token=d["ms_per_token"], dense_p10_ms=d["p10_ms"], dense_p90_ms=d["p90_ms"])
    if variants:
        v = per[variants[0]]
        res.update(sparse_variant=variants[0], sparse_ms_per_token=v["ms_per_token"], sparse_p10_ms=v["p10_ms"],
                   sparse_p90_ms=v["p90_ms"])
        if include_dense:
            res.update(speedup=v["speedup"], speedup_paired=v["speedup_paired"])
    res["dense"] = per.get("dense")
    res["variants"] = {n: per[n] for n in variants}
    if mlp is not None:
        res.update(mlp)
    res["layers"] = layers if variants else None
    return res


def _mlp_pass(handle: Any, model: nn.Module, workload: Workload, variant: Optional[str]) -> dict[str, Any]:
    """Time the MLP modules with hooks during one extra decode of every prompt, dense and (with a
    handle) sparse: MLP ms per token and its share of the step (the step time of this same pass)."""
    from sparseinfer_dse.models.discovery import decoder_layers

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
                ms, _ = _decode(model, run, workload.device)
                step_ms += sum(ms)
                n += len(ms)
        finally:
            timer.remove()
        out[f"{key}_mlp_ms_per_token"] = timer.total_ms / n
        out[f"{key}_step_ms_per_token_hooked"] = step_ms / n
        out[f"{key}_mlp_share"] = timer.total_ms / step_ms if step_ms else None
    out["mlp_share"] = out["dense_mlp_share"]
    return out


def thread_counts() -> dict[str, Optional[int]]:
    try:
        import numba

        nb: Optional[int] = numba.get_num_threads()
    except ImportError:  # pragma: no cover - numba is a dependency
        nb = None
    return {"torch": torch.get_num_threads(), "numba": nb}


def set_threads(n: int) -> None:
    """torch and Numba thread counts (Numba's cannot exceed NUMBA_NUM_THREADS, set at import)."""
    import numba

    if n < 1:
        raise UserError("--threads must be at least 1")
    if n > numba.config.NUMBA_NUM_THREADS:
        raise UserError(f"--threads {n} exceeds Numba's maximum here ({numba.config.NUMBA_NUM_THREADS}; "
                        "set NUMBA_NUM_THREADS before starting to raise it)")
    # Numba first: starting its OpenMP pool can reset the OpenMP thread count torch reads when both
    # share one libgomp, so torch's setting has to come after.
    numba.set_num_threads(n)
    torch.set_num_threads(n)


def _profile_info(handle: Any) -> Optional[dict[str, Any]]:
    if handle is None or handle.profile is None:
        return None
    p = handle.profile
    return {"name": p.name, "alphas": list(p.alphas)}


def format_table(res: dict[str, Any]) -> str:
    """A plain-text table of a `measure_decode_latency` result."""
    lines = [f"{'run':<20} {'ms/token':>9} {'p10':>8} {'p90':>8} {'tok/s':>7} {'speedup':>8} {'paired':>7} {'top1':>5}"]

    def row(label: str, s: dict[str, Any]) -> str:
        sp = f"{s['speedup']:.2f}x" if "speedup" in s else "1.00x"
        pr = f"{s['speedup_paired']:.2f}x" if "speedup_paired" in s else ""
        t1 = f"{s['top1_agreement']:.2f}" if s.get("top1_agreement") is not None else ""
        return (f"{label:<20} {s['ms_per_token']:>9.2f} {s['p10_ms']:>8.2f} {s['p90_ms']:>8.2f} "
                f"{s['tokens_per_s']:>7.2f} {sp:>8} {pr:>7} {t1:>5}")

    if res.get("dense"):
        lines.append(row("dense", res["dense"]))
    for name, s in res["variants"].items():
        lines.append(row(FIG4_LABELS[name], s))
    if "dense_mlp_ms_per_token" in res:
        lines.append("")
        lines.append(f"MLP share of the dense step: {res['dense_mlp_share']:.1%} "
                     f"({res['dense_mlp_ms_per_token']:.2f} of {res['dense_step_ms_per_token_hooked']:.2f} ms/token)")
        if "sparse_mlp_ms_per_token" in res:
            lines.append(f"MLP in the sparse step ({res.get('sparse_variant')}): {res['sparse_mlp_ms_per_token']:.2f} ms/token "
                         f"({res['sparse_mlp_share']:.1%} of {res['sparse_step_ms_per_token_hooked']:.2f}); "
                         f"MLP speedup {res['dense_mlp_ms_per_token'] / res['sparse_mlp_ms_per_token']:.2f}x")
    if res.get("layers"):
        lines.append("")
        lines.append(f"{'layer':>5} {'alpha':>6} {'relu':>6} {'pred':>6} {'+AS':>6} {'skipped':>8}")
        for l in res["layers"]:
            a = "dense" if l["alpha"] is None else f"{l['alpha']:.2f}"
            lines.append(f"{l['layer']:>5} {a:>6} {l['relu_sparsity']:>6.1%} {l['predicted_sparsity']:>6.1%} "
                         f"{l['actual_sparsity']:>6.1%} {l['skipped']:>8.1%}")
    return "\n".join(lines)
