"""`sparseinfer-dse bench model`: end-to-end per-token decode latency, dense vs SparseInfer, one device
(engine/model_bench.py measures; here the options are parsed and the table printed)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.cli.options import DecodeActivationOpt, DeviceOpt, DtypeOpt, GgufFileOpt, ModelOpt, ProfileOpt
from sparseinfer_dse.openmp import passive_openmp


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
    compile: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="Replay a torch.compile'd decode step on a static KV cache, dense and sparse alike "
        "(the sparse MLP is one custom op inside it): the figures without eager Python's per-module cost. The "
        "dense reference is compiled too (its own graph, the original MLPs inside). The first dense and the first sparse step "
        "compile (about a minute each for SmolLM2 on 2 cores). The hooked MLP-share pass stays eager.")] = False,
) -> None:
    """Per-token decode latency at batch 1: dense and SparseInfer interleaved in one run, on the same
    prompts and the same (teacher-forced) tokens, with median and p10/p90 ms/token, the speedup over
    dense, the MLP share of the dense step, the four variants of the paper's Fig. 4 and the sparsity
    measured per layer. Prefill is dense and untimed. Sets OMP_WAIT_POLICY=PASSIVE unless it is set."""
    omp_warning = passive_openmp()
    if omp_warning:
        typer.echo(f"warning: {omp_warning}", err=True)
    from sparseinfer_dse.engine.model_bench import ModelBench, order_variants, run_model_bench
    from sparseinfer_dse.models.loading import ModelSpec

    names = order_variants(variants.split(","))
    bench = ModelBench(ModelSpec(model, gguf_file, device, dtype, decode_activation), profile, backend, tokens,
                       prompts, repeats, warmup, names, threads, data_dir, mlp_share, allow_model_mismatch, compile)
    res = run_model_bench(bench, say=lambda msg: typer.echo(msg, err=True))
    res["command"] = _command_line(model=model, gguf_file=gguf_file, device=device, dtype=dtype,
                                   decode_activation=decode_activation, profile=profile, backend=backend,
                                   tokens=tokens, prompts=prompts, repeats=repeats, warmup=warmup,
                                   variants=",".join(names), threads=threads, data_dir=data_dir, json=json_out,
                                   mlp_share=mlp_share, allow_model_mismatch=allow_model_mismatch, compile=compile)
    if omp_warning:
        res["warnings"] = [omp_warning]
    from sparseinfer_dse.engine.latency_table import format_table

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
        if value is None or value is False and key in ("allow_model_mismatch", "compile"):
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
