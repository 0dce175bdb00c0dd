"""One `bench model` run: per-token decode latency at batch 1, dense and SparseInfer interleaved on
the same prompts and (teacher-forced) tokens; returns the result dict `bench model --json` writes."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from sparseinfer_dse.engine.latency import MAIN_VARIANT, VARIANTS, measure_decode_latency
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.machine import device_name, set_threads, thread_counts
from sparseinfer_dse.models.loading import ModelSpec, load_model
from sparseinfer_dse.models.synthetic import weight_bytes


@dataclass(frozen=True)
class ModelBench:
    """The settings of one run (the `bench model` options; variants with the headline one first)."""

    spec: ModelSpec
    profile: Optional[Path] = None
    backend: str = "auto"
    tokens: int = 32
    prompts: int = 2
    repeats: int = 3
    warmup: int = 1
    variants: tuple[str, ...] = ("kf+as", "kf", "as", "plain")
    threads: Optional[int] = None
    data_dir: Optional[Path] = None
    mlp_share: bool = True
    allow_model_mismatch: bool = False
    compile: bool = False  # replay a compiled decode step (dense and sparse alike)


def order_variants(names: Sequence[str]) -> tuple[str, ...]:
    """Checked variant names, the headline one first (sparse_ms_per_token / speedup refer to it)."""
    names = [v.strip().lower() for v in names if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise OptionError("variants", f"{{variants}} must list some of {', '.join(VARIANTS)}, got {','.join(names)!r}")
    if MAIN_VARIANT in names:
        names.remove(MAIN_VARIANT)
        names.insert(0, MAIN_VARIANT)
    return tuple(names)


def run_model_bench(bench: ModelBench, say=lambda msg: None) -> dict[str, Any]:
    """Measure; `say` gets the one-line description of the run before it starts."""
    for field, least in (("tokens", 1), ("prompts", 1), ("repeats", 1), ("warmup", 0)):
        if getattr(bench, field) < least:
            raise OptionError(field, f"{{{field}}} must be at least {least}, not {getattr(bench, field)}")
    if bench.threads is not None:
        set_threads(bench.threads)
    texts = gsm8k_prompts(bench.prompts, bench.data_dir)
    given = Profile.load(bench.profile) if bench.profile is not None else None  # fails before the load
    load_avg_start = os.getloadavg()
    t0 = time.perf_counter()
    lm = load_model(bench.spec, weights=True, tokenizer=True)
    load_s = time.perf_counter() - t0
    if lm.tokenizer is None:
        raise UserError(f"{bench.spec.model} has no tokenizer; bench model needs one to encode the prompts")
    prof = (given.check_model(lm.identity, bench.allow_model_mismatch) if given is not None
            else Profile.uniform(len(lm.mlps), 1.0, lm.identity))
    t0 = time.perf_counter()
    handle = sparsify(lm, prof, backend=bench.backend, allow_model_mismatch=bench.allow_model_mismatch)
    sparsify_s = time.perf_counter() - t0
    if handle.notice:
        say(f"note: {handle.notice}")
    threads_now = thread_counts()
    say(f"{bench.spec.model} on {lm.device} ({device_name(lm.device)}), {str(lm.dtype).replace('torch.', '')}, "
        f"backend {handle.backend}, profile {prof.name or bench.profile}, threads torch {threads_now['torch']} "
        f"numba {threads_now['numba']}; {bench.prompts} prompts x {bench.tokens} tokens x {bench.repeats} rounds"
        + ("; compiled decode step (the first warm-up step compiles it)" if bench.compile else ""))
    res = measure_decode_latency(handle, lm.tokenizer, texts, tokens=bench.tokens, repeats=bench.repeats,
                                 variants=list(bench.variants), warmup=bench.warmup, mlp_share=bench.mlp_share,
                                 collect_sparsity=True, progress=True, compile=bench.compile)
    wb = weight_bytes(lm.model)
    res.update({
        "model": bench.spec.model,
        "gguf_file": bench.spec.gguf_file,
        "profile_file": str(bench.profile) if bench.profile is not None else None,
        "device_name": device_name(lm.device),
        "decode_activation": bench.spec.decode_activation,
        "weight_bytes_per_token": wb,
        "mlp_weight_fraction": wb["mlp"] / max(sum(wb.values()), 1),
        "extra_bytes": handle.extra_bytes,
        "prompt_source": (str(bench.data_dir / "gsm8k" / "test.jsonl") if bench.data_dir
                          else "built-in GSM8K-style questions"),
        "load_s": load_s,
        "sparsify_s": sparsify_s,
        "load_average": {"start": list(load_avg_start), "end": list(os.getloadavg())},
        "host": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": lm.notes,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    })
    if handle.notice:
        res["notice"] = handle.notice
    handle.undo()
    return res
