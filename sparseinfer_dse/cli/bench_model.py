"""`sparseinfer-dse bench model`: end-to-end per-token decode latency, dense vs SparseInfer, one device."""

from __future__ import annotations

import json
import os
import platform
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.cli.options import DecodeActivationOpt, DeviceOpt, DtypeOpt, GgufFileOpt, ModelOpt, ProfileOpt
from sparseinfer_dse.machine import device_name
from sparseinfer_dse.openmp import passive_openmp


def _load(spec: Any) -> Any:
    from sparseinfer_dse.models.loading import load_model
    from sparseinfer_dse.models.synthetic import is_synthetic_name, load_synthetic

    if is_synthetic_name(spec.model) and not Path(spec.model).exists():
        return load_synthetic(spec)
    return load_model(spec, weights=True, tokenizer=True)


def bench_model_command(
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    decode_activation: DecodeActivationOpt = None,
    profile: ProfileOpt = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, numba-cpu, numba-cuda or torch.")] = "auto",
    tokens: Annotated[int, typer.Option("--tokens", "-n", help="Tokens decoded per run (teacher-forced: the dense greedy continuation).")] = 32,
    prompts: Annotated[int, typer.Option("--prompts", help="Number of prompts (the first GSM8K test questions).")] = 2,
    repeats: Annotated[int, typer.Option("--repeats", "-r", help="Rounds; each decodes every prompt once per variant, interleaved with dense.")] = 3,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs of the first prompt per variant before timing.")] = 1,
    variants: Annotated[str, typer.Option(
        "--variants", help="Comma list of SparseInfer variants (Fig. 4): kf+as (fused kernel + actual sparsity; "
        "the headline), kf, as, plain.")] = "kf+as,kf,as,plain",
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch and Numba threads (default: as started).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Directory holding gsm8k/test.jsonl; default: built-in GSM8K-style questions.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full results as JSON to this file.")] = None,
    mlp_share: Annotated[bool, typer.Option("--mlp-share/--no-mlp-share", help="Extra pass timing the MLP modules with hooks.")] = True,
    allow_model_mismatch: Annotated[bool, typer.Option(help="Accept a profile made for another model with the same layer count.")] = False,
) -> None:
    """Per-token decode latency at batch 1: dense and SparseInfer interleaved in one run, on the same
    prompts and the same (teacher-forced) tokens, with median and p10/p90 ms/token, the speedup over
    dense, the MLP share of the dense step, the four variants of the paper's Fig. 4 and the sparsity
    measured per layer. Prefill is dense and untimed. Sets OMP_WAIT_POLICY=PASSIVE unless it is set."""
    omp_warning = passive_openmp()
    if omp_warning:
        typer.echo(f"warning: {omp_warning}", err=True)
    from sparseinfer_dse.engine.latency import (
        MAIN_VARIANT,
        VARIANTS,
        format_table,
        gsm8k_prompts,
        measure_decode_latency,
        set_threads,
        thread_counts,
    )
    from sparseinfer_dse.engine.sparsify import sparsify
    from sparseinfer_dse.errors import UserError
    from sparseinfer_dse.models.loading import ModelSpec
    from sparseinfer_dse.models.synthetic import weight_bytes
    from sparseinfer_dse.engine.profile import AlphaProfile

    names = [v.strip().lower() for v in variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise UserError(f"--variants must list some of {', '.join(VARIANTS)}, got {variants!r}")
    if MAIN_VARIANT in names:  # the headline variant first: sparse_ms_per_token / speedup refer to it
        names.remove(MAIN_VARIANT)
        names.insert(0, MAIN_VARIANT)
    if tokens < 1 or prompts < 1 or repeats < 1 or warmup < 0:
        raise UserError("--tokens, --prompts and --repeats must be at least 1, --warmup at least 0")
    if threads is not None:
        set_threads(threads)
    texts = gsm8k_prompts(prompts, data_dir)
    given = AlphaProfile.load(profile) if profile is not None else None  # a bad file fails before the model loads
    load_avg_start = os.getloadavg()
    t0 = time.perf_counter()
    lm = _load(ModelSpec(model, gguf_file, device, dtype, decode_activation))
    load_s = time.perf_counter() - t0
    if lm.tokenizer is None:
        raise UserError(f"{model} has no tokenizer; bench model needs one to encode the prompts")
    prof = (given.check_model(lm.identity, allow_model_mismatch) if given is not None
            else AlphaProfile.uniform(len(lm.mlps), 1.0, lm.identity))
    t0 = time.perf_counter()
    handle = sparsify(lm, prof, backend=backend, allow_model_mismatch=allow_model_mismatch)
    sparsify_s = time.perf_counter() - t0
    if handle.notice:
        typer.echo(f"note: {handle.notice}", err=True)
    threads_now = thread_counts()
    typer.echo(f"{model} on {lm.device} ({device_name(lm.device)}), {str(lm.dtype).replace('torch.', '')}, "
               f"backend {handle.backend}, profile {prof.name or profile}, threads torch {threads_now['torch']} "
               f"numba {threads_now['numba']}; {prompts} prompts x {tokens} tokens x {repeats} rounds", err=True)
    res = measure_decode_latency(handle, lm.tokenizer, texts, tokens=tokens, repeats=repeats, variants=names,
                                 warmup=warmup, mlp_share=mlp_share, collect_sparsity=True, progress=True)
    wb = weight_bytes(lm.model)
    res.update({
        "model": model,
        "gguf_file": gguf_file,
        "profile_file": str(profile) if profile is not None else None,
        "device_name": device_name(lm.device),
        "decode_activation": decode_activation,
        "weight_bytes_per_token": wb,
        "mlp_weight_fraction": wb["mlp"] / max(sum(wb.values()), 1),
        "extra_bytes": handle.extra_bytes,
        "prompt_source": str(data_dir / "gsm8k" / "test.jsonl") if data_dir else "built-in GSM8K-style questions",
        "load_s": load_s,
        "sparsify_s": sparsify_s,
        "load_average": {"start": list(load_avg_start), "end": list(os.getloadavg())},
        "host": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "command": _command_line(model=model, gguf_file=gguf_file, device=device, dtype=dtype,
                                 decode_activation=decode_activation, profile=profile, backend=backend,
                                 tokens=tokens, prompts=prompts, repeats=repeats, warmup=warmup,
                                 variants=",".join(names), threads=threads, data_dir=data_dir, json=json_out,
                                 mlp_share=mlp_share, allow_model_mismatch=allow_model_mismatch),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": lm.notes,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    })
    if omp_warning:
        res["warnings"] = [omp_warning]
    if handle.notice:
        res["notice"] = handle.notice
    handle.undo()
    typer.echo(format_table(res))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_out, json.dumps(res, indent=2) + "\n")
        typer.echo(f"wrote {json_out}")


def _command_line(**opts: Any) -> str:
    """The command that reproduces this run, every setting spelled out (None options left out)."""
    parts = ["sparseinfer-dse", "bench", "model"]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False and key == "allow_model_mismatch":
            continue
        if key == "mlp_share":
            if not value:
                parts.append("--no-mlp-share")
            continue
        if value is True:
            parts.append(flag)
            continue
        parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)
