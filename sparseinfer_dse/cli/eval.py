"""`sparseinfer-dse eval`: lm-eval accuracy of a sparsified model against its (cached) dense baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.flags import flags_in_errors, given_flags
from sparseinfer_dse.cli.options import (
    DecodeActivationOpt,
    DeviceOpt,
    DtypeOpt,
    GgufFileOpt,
    ModelOpt,
    ProfileOpt,
)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _fmt_pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:6.2f}"


def _fmt_se(v: Optional[float]) -> str:
    return "" if v is None else f"± {100 * v:.2f}"


def _interval(iv: Optional[list], signed: bool = False) -> str:
    return "" if not iv else (f" [{iv[0]:+.2f}, {iv[1]:+.2f}]" if signed else f" [{iv[0]:.2f}, {iv[1]:.2f}]")


def _rows_for_print(name: str, row: dict, dense: Optional[dict]) -> list[list[str]]:
    """One printed line per metric of the task (gsm8k: strict-match and flexible-extract); the primary
    metric's line carries the 95% intervals (from the per-document scores) and the noise verdict."""
    from sparseinfer_dse.eval.eval_job import task_intervals

    iv = task_intervals(row, dense)
    lines = []
    for metric, m in row.get("metrics", {}).items():
        dm = (dense or {}).get("metrics", {}).get(metric, {})
        dv = dm.get("value")
        delta = None if dv is None or m["value"] is None else 100 * (m["value"] - dv)
        primary = metric == row.get("metric")
        verdict = "" if not primary or "delta_beyond_noise" not in iv else (
            "beyond noise" if iv["delta_beyond_noise"] else "within noise")
        lines.append([
            name, metric, _fmt_pct(m["value"]).strip() + (_interval(iv.get("value_ci95")) if primary else ""),
            _fmt_se(m["stderr"]), str(row.get("n", "")), _fmt_pct(dv).strip(),
            ("-" if delta is None else f"{delta:+.2f}") + (_interval(iv.get("delta_ci95"), True) if primary else ""),
            verdict,
        ])
        name = ""
    return lines


def _table(lines: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def eval_command(
    ctx: typer.Context,
    tasks: Annotated[Optional[str], typer.Option("--tasks", "-t", help="Comma list: gsm8k, gsm8k_cot, bbh, bbh_cot_fewshot_<subtask>, bbh_zeroshot, demo_arith, or any lm-eval task name (hub). Default: the tasks the --profile's search measured (required when it records none).")] = None,
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    profile: ProfileOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="First N documents of each task (all if omitted).")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option("--num-fewshot", help="Override the task's few-shot count.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Generation batch size (scores move with it; the baseline is cached per batch size). Default: the --profile's measurement, else 8.")] = 8,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Offline data: gsm8k/{train,test}.jsonl and bbh/*.json (default: the GSM8K and BBH data shipped in sparseinfer_dse/data).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write lm-eval results JSON, samples and summary.json here.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="torch (reference path), numba-cpu, numba-cuda, or auto (numba-cuda on a GPU, else numba-cpu); all batch. Default: the --profile's measurement, else torch.")] = "torch",
    proxy: Annotated[bool, typer.Option("--proxy", help="Also report the fidelity proxies (KL, top-1, NLL vs dense).")] = False,
    calibration: Annotated[Optional[str], typer.Option("--calibration", help="Proxy text: gsm8k (from --data-dir or the shipped data), demo, or a file (.jsonl or text). Default: demo for the demo model, else gsm8k.")] = None,
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
    with the profile's per-layer alpha (default: uniform 1.00). Prints per task the metric with its
    95% interval, stderr, sample count, dense baseline and the paired delta in points with its interval.

    A profile exported by a search is measured as the search measured it (tasks, limit, batch size,
    backend, seed...); a flag given overrides that setting, and the figure is then not comparable.
    """
    from sparseinfer_dse.eval.eval_job import EvalJob, recorded_measurement, run_eval

    with flags_in_errors(ctx.command):
        job = EvalJob.resolve(given_flags(ctx), recorded_measurement(profile))
    res = run_eval(job, say=_say)

    names = job.tasks
    lines: list[list[str]] = []
    for n in names:
        lines += _rows_for_print(n, res.rows[n], res.dense_rows.get(n))
    typer.echo(f"\nmodel {model} | profile {res.profile_desc} | backend {res.backend} | limit {job.limit} | "
               f"batch {job.batch_size} | seed {job.seed}")
    typer.echo(_table(lines, ["task", "metric", "value % [95%]", "stderr", "n", "dense %", "delta pts [95%]",
                              "vs dense"]))
    typer.echo("95% intervals: bootstrap over the documents, the delta paired with dense on the same documents; "
               "beyond noise when its interval excludes 0")
    for note in res.notes:
        typer.echo(f"note: {note}")
    times = ", ".join(f"{n} {res.rows[n]['seconds']:.1f}s" for n in names)
    typer.echo(f"time (sparse eval): {times}")
    p = res.proxy
    if p:
        typer.echo(f"proxy ({p['calibration']}, {p['n_tokens']} decode positions): "
                   f"KL(dense||sparse) {p['kl']:.5f} nats, top-1 agreement {100 * p['top1']:.2f}%, "
                   f"NLL {p['nll']:.4f} (dense {p['dense_nll']:.4f})")
    if res.summary_path is not None:
        typer.echo(f"wrote {res.summary_path} (lm-eval results and samples under {out}/sparse and {out}/dense)")
