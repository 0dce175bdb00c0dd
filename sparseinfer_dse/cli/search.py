"""`sparseinfer-dse search`: the Pareto search over alpha profiles (search/session.py runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.flags import given_flags
from sparseinfer_dse.cli.options import DecodeActivationOpt, DeviceOpt, DtypeOpt, GgufFileOpt, ModelOpt


def search_command(
    ctx: typer.Context,
    model: ModelOpt = "demo",
    budget: Annotated[int, typer.Option(help="Trials in the whole study (a rerun continues up to it).")] = 20,
    study: Annotated[Optional[Path], typer.Option(help="Study TOML (see studies/); flags override it.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default studies/runs/<name>).")] = None,
    name: Annotated[str, typer.Option(help="Study name (folder and optuna study).")] = "demo",
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default: SQLite in the output folder); postgresql://user:password@host/db lets workers on many machines join one study (same --name).")] = None,
    space: Annotated[str, typer.Option(help="per-layer, early-block (one level on the first N layers) or groups:K.")] = "per-layer",
    method: Annotated[Optional[str], typer.Option(help="sparseinfer (ReLU models; the default for them), or for SiLU models cats, teal, wisparse or rsparse (calibrated thresholds, computed once and cached; rsparse adds a low-rank remainder per layer).")] = None,
    alpha_range: Annotated[str, typer.Option(help="sparseinfer: alpha range low:high.")] = "0.95:1.10",
    alpha_step: Annotated[float, typer.Option(help="sparseinfer: alpha grid step.")] = 0.01,
    sparsity_range: Annotated[str, typer.Option(help="cats/teal/wisparse/rsparse: per-layer target sparsity range low:high.")] = "0.0:0.9",
    sparsity_step: Annotated[float, typer.Option(help="cats/teal/wisparse/rsparse: sparsity grid step.")] = 0.05,
    rank_range: Annotated[str, typer.Option(help="rsparse: per-layer rank range low:high of the low-rank remainder (0 = none; at most the MLP's smaller side).")] = "0:64",
    rank_step: Annotated[int, typer.Option(help="rsparse: rank grid step.")] = 16,
    sampler: Annotated[str, typer.Option(help="tpe (multivariate), nsga2, gp, random, or evo (EvoPress-style: mutates a Pareto-front profile, moving one layer's level up a step and another's down).")] = "tpe",
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    fidelity: Annotated[Optional[str], typer.Option(help="full (lm-eval every trial), proxy, or staged (proxy, lm-eval near the front). Default: staged with --tasks, else proxy.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="lm-eval tasks for accuracy, e.g. demo_arith or gsm8k_cot,bbh.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Documents per lm-eval task.")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option(help="Few-shot examples (task default if unset).")] = None,
    batch_size: Annotated[int, typer.Option(help="lm-eval batch size (keep it fixed across a study).")] = 16,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with gsm8k/ and bbh/ for offline tasks, prompts and calibration (default: the GSM8K and BBH data shipped in sparseinfer_dse/data).")] = None,
    calibration: Annotated[Optional[str], typer.Option(help="Proxy calibration text: gsm8k, demo or a file (default: demo for the demo model, else gsm8k).")] = None,
    calibration_samples: Annotated[int, typer.Option(help="Calibration sequences for the proxy.")] = 32,
    proxy_metric: Annotated[str, typer.Option(help="Proxy objective: kl (maximise -KL) or top1 (agreement %).")] = "kl",
    latency_tokens: Annotated[int, typer.Option(help="Tokens decoded per latency run.")] = 16,
    latency_prompts: Annotated[int, typer.Option(help="Prompts per latency measurement.")] = 2,
    latency_repeats: Annotated[int, typer.Option(help="Interleaved dense/sparse rounds per trial; rounds x prompts paired runs give the latency's 95% interval (at least 6 for a real one; 10 by default).")] = 5,
    latency_fidelity: Annotated[str, typer.Option(help="measured (every trial decodes dense and sparse), or staged: a trial's latency is first predicted by the latency model (measured once per device, model and method, cached; see `bench latency-model`) and measured only when the trial is on or near the front; verify always measures.")] = "measured",
    latency_model_error: Annotated[float, typer.Option(help="Staged latency: the prediction's assumed relative error, used as its interval when screening.")] = 0.1,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    backend: Annotated[str, typer.Option(help="auto, numba-cpu, numba-cuda or torch.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch and numba.")] = None,
    gguf_file: GgufFileOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    decode_activation: DecodeActivationOpt = None,
    report: Annotated[bool, typer.Option(help="Draw the report at the end.")] = True,
    verify: Annotated[bool, typer.Option(help="At the end, measure the front, the seeds and dense again, interleaved, with 3x the latency rounds and every task document (verified.csv; `sparseinfer-dse verify` does it later).")] = True,
    heartbeat_interval: Annotated[int, typer.Option(help="Seconds between heartbeats of a running trial (crash detection).")] = 10,
    grace_period: Annotated[int, typer.Option(help="Seconds without heartbeat after which another worker fails a trial as lost and re-enqueues it.")] = 30,
    storage_outage_limit: Annotated[float, typer.Option(help="Seconds to wait for an unreachable database (a server restart) before stopping with exit code 2; the trial whose result could not be stored is rerun.")] = 300.0,
) -> None:
    """Search per-layer sparsity profiles for the Pareto front of (decode latency, accuracy).

    The method (--method) sets what a layer's level means: SparseInfer's alpha on ReLU models, a
    target sparsity for CATS, TEAL, WiSparse or R-Sparse on SiLU models (Llama, Qwen, SmolLM2), and
    for R-Sparse a rank per layer too (the skipped channels go through a rank-r SVD of the weight,
    computed once and cached). Latency is
    measured on the device (batch 1, interleaved with dense); accuracy by the KL proxy, lm-eval
    (--tasks), or both (staged); `--model demo` defaults to staged `demo_arith` (limit 100, alpha
    0.85:1.10). The first trials are the method's seeds: uniform 1.00 and the paper's heuristic
    (1.03 on the first half of the layers) for sparseinfer; dense and uniform 30 / 50 / 70% else. Rerunning the same command continues the study; Ctrl-C
    stops cleanly. Writes trials.csv, pareto.csv, profiles/, study.json and report.html.

    Several workers (GPUs, machines) join one study by running the same command with the same
    --storage (PostgreSQL) and --name; --budget counts the whole study's finished trials. Watch it
    with `sparseinfer-dse status`.
    """
    from sparseinfer_dse.search.options import SearchOptions
    from sparseinfer_dse.search.session import run_search

    given = {k: v for k, v in given_flags(ctx).items() if k != "study"}
    outcome = run_search(SearchOptions.resolve(given, study), say=typer.echo)
    out = outcome.out
    if outcome.writing_interrupted:
        typer.echo(f"interrupted while writing {out}: every finished trial is kept in the study; rerun the "
                   "same command to write the outputs", err=True)
        raise typer.Exit(130)
    summary = outcome.summary
    counts = ", ".join(f"{n} {k.lower()}" for k, n in summary["trials"].items())
    typer.echo(f"{'interrupted: ' if outcome.interrupted else ''}{sum(summary['trials'].values())} trials ({counts}), "
               f"front of {summary['front_size']} -> {out}/pareto.csv, profiles/, report.html "
               "(rerun the same command to continue)")
    _show(out)
    if outcome.interrupted:
        raise typer.Exit(130)


def _show(out: Path) -> None:
    """The front (and the verified points) with their intervals and verdicts."""
    import pandas as pd

    from sparseinfer_dse.search.front_table import format_points

    for name, title in (("pareto.csv", "search front"), ("verified.csv", "verified (measured again, together)")):
        path = out / name
        if path.is_file() and path.stat().st_size > 1:
            typer.echo(f"\n{title}:\n{format_points(pd.read_csv(path))}")
