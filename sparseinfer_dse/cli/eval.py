"""`sparseinfer-dse eval`: lm-eval accuracy of a sparsified model against its (cached) dense baseline."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.cli.options import (
    DecodeActivationOpt,
    DeviceOpt,
    DtypeOpt,
    GgufFileOpt,
    ModelOpt,
    ProfileOpt,
)

BACKENDS = ("torch", "numba-cpu", "numba-cuda")


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _fmt_pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:6.2f}"


def _fmt_se(v: Optional[float]) -> str:
    return "" if v is None else f"± {100 * v:.2f}"


def _rows_for_print(name: str, row: dict, dense: Optional[dict]) -> list[list[str]]:
    """One printed line per metric of the task (gsm8k: strict-match and flexible-extract)."""
    lines = []
    for metric, m in row.get("metrics", {}).items():
        dm = (dense or {}).get("metrics", {}).get(metric, {})
        dv = dm.get("value")
        delta = None if dv is None or m["value"] is None else 100 * (m["value"] - dv)
        lines.append([
            name, metric, _fmt_pct(m["value"]), _fmt_se(m["stderr"]), str(row.get("n", "")),
            _fmt_pct(dv), "-" if delta is None else f"{delta:+.2f}",
        ])
        name = ""
    return lines


def _table(lines: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def _summary_entry(row: dict, dense: Optional[dict]) -> dict[str, Any]:
    dv = dense.get("value") if dense else None
    entry: dict[str, Any] = {
        "metric": row.get("metric"),
        "value": row.get("value"),
        "stderr": row.get("stderr"),
        "n": row.get("n"),
        "dense": dv,
        "dense_stderr": dense.get("stderr") if dense else None,
        "delta": None if dv is None or row.get("value") is None else 100 * (row["value"] - dv),
        "delta_unit": "points",
        "seconds": row.get("seconds"),
        "dense_seconds": dense.get("seconds") if dense else None,
        "dense_cached": dense.get("cached") if dense else None,
        "metrics": {
            k: {**v, "dense": (dense or {}).get("metrics", {}).get(k, {}).get("value")} for k, v in row.get("metrics", {}).items()
        },
    }
    if "subtasks" in row:
        entry["subtasks"] = {
            s: _summary_entry(r, (dense or {}).get("subtasks", {}).get(s)) for s, r in row["subtasks"].items()
        }
    return entry


def eval_command(
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma list: gsm8k, gsm8k_cot, bbh, bbh_cot_fewshot_<subtask>, bbh_zeroshot, demo_arith, or any lm-eval task name (hub).")],
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    profile: ProfileOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="First N documents of each task (all if omitted).")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option("--num-fewshot", help="Override the task's few-shot count.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Generation batch size (scores move with it; the baseline is cached per batch size).")] = 8,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Offline data: gsm8k/{train,test}.jsonl and bbh/*.json (the layout of shared/data).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write lm-eval results JSON, samples and summary.json here.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="torch (batched reference path), numba-cpu (batch 1 only) or numba-cuda.")] = "torch",
    proxy: Annotated[bool, typer.Option("--proxy", help="Also report the fidelity proxies (KL, top-1, NLL vs dense).")] = False,
    calibration: Annotated[Optional[str], typer.Option("--calibration", help="Proxy text: gsm8k (needs --data-dir), demo, or a file (.jsonl or text). Default: demo for the demo model, else gsm8k.")] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", help="Calibration sequences for --proxy.")] = 32,
    decode_activation: DecodeActivationOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    seed: Annotated[int, typer.Option("--seed", help="lm-eval's random, numpy, torch and few-shot seeds.")] = 1234,
    max_gen_toks: Annotated[Optional[int], typer.Option("--max-gen-toks", help="Cap on generated tokens per answer (overrides the task's).")] = None,
    refresh_baseline: Annotated[bool, typer.Option("--refresh-baseline", help="Recompute the dense baseline even if cached.")] = False,
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Skip the dense baseline (no delta).")] = False,
    allow_model_mismatch: Annotated[bool, typer.Option(help="Accept a profile made for another model with the same layer count.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show lm-eval's log messages.")] = False,
) -> None:
    """Evaluate a sparsified model with lm-eval (GSM8K, BBH, demo_arith...) against the dense baseline.

    Sparsity applies in decoding exactly as the engine runs it: prefill dense, each decode step
    with the profile's per-layer alpha (default: uniform 1.00). Prints per task the metric,
    stderr, sample count, dense baseline and delta in points.
    """
    from sparseinfer_dse.errors import UserError
    from sparseinfer_dse.eval.baseline_cache import ModelFacts, dense_baseline
    from sparseinfer_dse.eval.harness import build_task_manager, evaluate_tasks, parse_tasks

    names = parse_tasks(tasks)
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "numba-cpu" and batch_size != 1:
        raise UserError("--backend numba-cpu runs one sequence at a time: use --batch-size 1")
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    if proxy and calibration not in (None, "gsm8k", "demo") and not Path(calibration).is_file():
        raise UserError(f"--calibration {calibration}: not gsm8k, demo or an existing file")
    gen_kwargs = {"max_gen_toks": max_gen_toks} if max_gen_toks else None

    _say(f"tasks: checking {', '.join(names)}")
    tm = build_task_manager(names, data_dir)

    from sparseinfer_dse.engine.sparsify import sparsify
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.engine.profile import AlphaProfile, alphas_repr

    given = AlphaProfile.load(profile) if profile is not None else None  # a bad file fails before the model loads
    _say(f"model: loading {model}")
    t0 = time.perf_counter()
    loaded = load_model(ModelSpec(model, gguf_file, device, dtype, decode_activation), weights=True, tokenizer=True)
    _say(f"model: loaded in {time.perf_counter() - t0:.1f}s ({loaded.identity.num_layers} layers, {loaded.dtype}, {loaded.device})")
    n_layers = loaded.identity.num_layers
    if profile is not None:
        prof = given.check_model(loaded.identity, allow_model_mismatch)
        prof_desc = f"{profile} ({prof.name or 'unnamed'})"
    else:
        prof = AlphaProfile.uniform(n_layers, 1.0, loaded.identity)
        prof_desc = "uniform 1.00 (engine default; pass --profile for another)"
    facts = ModelFacts.of(loaded, loaded.tokenizer)  # before sparsify: fingerprints the original weights
    handle = sparsify(loaded, prof, backend=backend, allow_model_mismatch=allow_model_mismatch)
    if handle.notice:
        _say(f"note: {handle.notice}")
    _say(f"profile: {prof_desc}: {alphas_repr(prof.alphas)} [backend {handle.backend}]")

    dense_rows: dict[str, dict] = {}
    if not no_baseline:
        _say("dense baseline: looking up the cache / evaluating the dense model")
        dense_rows = dense_baseline(loaded, loaded.tokenizer, names, limit, num_fewshot, batch_size, data_dir, seed,
                                    handle=handle, facts=facts, refresh=refresh_baseline,
                                    out_dir=(out / "dense") if out else None, gen_kwargs=gen_kwargs,
                                    task_manager=tm, verbose=verbose)
        for n, r in dense_rows.items():
            how = "from the cache" if r["cached"] else f"evaluated in {r.get('seconds') or 0:.1f}s"
            _say(f"dense baseline {n}: {how}")

    _say("sparse: evaluating with the profile")
    rows = evaluate_tasks(handle, loaded.tokenizer, names, limit, num_fewshot, batch_size, data_dir, seed,
                          out_dir=(out / "sparse") if out else None, gen_kwargs=gen_kwargs, task_manager=tm,
                          verbose=verbose)

    proxy_res = None
    if proxy:
        from sparseinfer_dse.eval.proxy import DenseReference, load_calibration, proxy_metrics

        cal = load_calibration(calibration, data_dir=data_dir, model_name=model, n=calibration_samples)
        _say(f"proxy: calibration {cal.name}")
        ref = DenseReference.build(handle, loaded.tokenizer, cal, batch_size=1 if backend == "numba-cpu" else 8,
                                   progress=True)
        proxy_res = proxy_metrics(handle, loaded.tokenizer, ref, progress=True)

    lines: list[list[str]] = []
    for n in names:
        lines += _rows_for_print(n, rows[n], dense_rows.get(n))
    typer.echo(f"\nmodel {model} | profile {prof_desc} | backend {handle.backend} | limit {limit} | "
               f"batch {batch_size} | seed {seed}")
    typer.echo(_table(lines, ["task", "metric", "value %", "stderr", "n", "dense %", "delta pts"]))
    for n in names:
        kind = rows[n].get("output_type", "generate_until")
        if "generate_until" not in kind:
            typer.echo(f"note: {n} is scored by log-likelihood ({kind}): one prefill pass, which runs dense, "
                       "so the profile cannot change its score")
    times = ", ".join(f"{n} {rows[n]['seconds']:.1f}s" for n in names)
    typer.echo(f"time (sparse eval): {times}")
    if proxy_res:
        typer.echo(f"proxy ({proxy_res['calibration']}, {proxy_res['n_tokens']} decode positions): "
                   f"KL(dense||sparse) {proxy_res['kl']:.5f} nats, top-1 agreement {100 * proxy_res['top1']:.2f}%, "
                   f"NLL {proxy_res['nll']:.4f} (dense {proxy_res['dense_nll']:.4f})")

    if out is not None:
        import lm_eval

        summary = {
            "model": model,
            "model_identity": loaded.identity.to_dict(),
            "weights": facts.weights,
            "profile": {"path": str(profile) if profile else None, "name": prof.name, "alphas": list(prof.alphas)},
            "backend": handle.backend,
            "decode_activation": loaded.spec.decode_activation,
            "dtype": str(loaded.dtype).replace("torch.", ""),
            "device": str(loaded.device),
            "limit": limit,
            "num_fewshot": num_fewshot,
            "batch_size": batch_size,
            "seed": seed,
            "gen_kwargs": gen_kwargs,
            "data_dir": str(data_dir.resolve()) if data_dir else None,
            "lm_eval": lm_eval.__version__,
            "tasks": {n: _summary_entry(rows[n], dense_rows.get(n)) for n in names},
            "proxy": proxy_res,
            "command": " ".join(sys.argv),
        }
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        typer.echo(f"wrote {out / 'summary.json'} (lm-eval results and samples under {out}/sparse and {out}/dense)")
