"""`sparseinfer-dse bench kernels`: one MLP block, dense torch vs the SparseInfer kernels
(engine/kernel_bench.py times it; here the options are parsed and the table printed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.openmp import passive_openmp, wait_policy_note


def _split(values: Optional[list[str]]) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _ranks(values: Optional[list[str]]) -> list[int]:
    try:
        return [int(v) for v in _split(values)] or [0]
    except ValueError:
        raise UserError(f"--rank must be whole numbers, got {values!r}") from None


def _label(row: dict[str, Any]) -> str:
    """'teal', or 'rsparse r32' for an rsparse row."""
    return row["method"] + (f" r{row['rank']}" if row.get("rank") is not None else "")


def parse_shapes(values: Optional[list[str]]) -> list[tuple[int, int]]:
    shapes = []
    for s in _split(values):
        try:
            d, k = (int(p) for p in s.lower().split("x"))
        except ValueError:
            raise UserError(f"--shape {s!r}: expected DxK, e.g. 4096x11008") from None
        if d < 1 or k < 1:
            raise UserError(f"--shape {s!r}: sizes must be positive")
        shapes.append((d, k))
    return shapes


def parse_sparsities(values: Optional[list[str]]) -> list[float]:
    out = []
    for s in _split(values):
        try:
            v = float(s)
        except ValueError:
            raise UserError(f"--sparsity {s!r} is not a number") from None
        if not 0.0 <= v <= 1.0:
            raise UserError(f"--sparsity {s!r} must be between 0 and 1")
        out.append(v)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'dtype':<9}{'d x k':>12}{'target':>7}{'actual':>7}{'pred':>6}{'dense ms':>10}{'sparse ms':>10}"
            f"{'p10-p90':>13}{'speedup':>8}{'nofuse':>7}{'noAS':>6}{'pred ms':>8}{'read':>7}{'share':>6}{'call':>6}"
            f"{'GB/s':>6}{'dense':>6}{'limit':>6}{'ratio':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['dtype']:<9}{str(r['d']) + 'x' + str(r['k']):>12}{r['sparsity']:>7.2f}{r['actual_sparsity']:>7.2f}"
            f"{r['predicted_sparsity']:>6.2f}{r['dense_ms']:>10.2f}{r['sparse_ms']:>10.2f}"
            f"{r['sparse_p10_ms']:>6.2f}-{r['sparse_p90_ms']:<6.2f}{r['speedup']:>7.2f}x{r['speedup_nofuse']:>6.2f}x"
            f"{r['speedup_noas']:>5.2f}x{r['predictor_ms']:>8.3f}{r['sign_read_ms']:>7.3f}"
            f"{100 * r['predictor_share']:>5.0f}%{100 * r['predict_call_share']:>5.0f}%"
            f"{r['gbps']:>6.1f}{r['dense_gbps']:>6.1f}{r['limit_gbps']:>6.1f}{r['limit_ratio']:>6.2f}"
        )
    return "\n".join(lines)


def format_method_table(rows: list[dict[str, Any]]) -> str:
    """The table of `--method cats|teal|wisparse|rsparse` rows."""
    head = (f"{'method':<13}{'dtype':<9}{'d x k':>12}{'target':>7}{'skip':>6}{'dense ms':>10}{'sparse ms':>10}"
            f"{'p10-p90':>13}{'speedup':>8}{'ideal':>7}{'of id.':>7}{'GB/s':>6}{'limit':>6}{'ratio':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{_label(r):<13}{r['dtype']:<9}{str(r['d']) + 'x' + str(r['k']):>12}{r['sparsity']:>7.2f}{r['skipped']:>6.2f}"
            f"{r['dense_ms']:>10.2f}{r['sparse_ms']:>10.2f}{r['sparse_p10_ms']:>6.2f}-{r['sparse_p90_ms']:<6.2f}"
            f"{r['speedup']:>7.2f}x{r['ideal']:>6.2f}x{100 * r['ideal_ratio']:>6.0f}%{r['gbps']:>6.1f}"
            f"{r['limit_gbps']:>6.1f}{r['limit_ratio']:>6.2f}")
    return "\n".join(lines)


def bench_kernels_command(
    method: Annotated[str, typer.Option("--method", help="sparseinfer (sign predictor + row-sparse MLP), cats (SiLU magnitude threshold), teal or wisparse (input-channel-sparse products), rsparse (wisparse's products + a low-rank remainder of the skipped channels).")] = "sparseinfer",
    rank: Annotated[Optional[list[str]], typer.Option("--rank", help="rsparse: ranks of the low-rank remainder, comma list (default 0: none).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="numba-cpu, numba-cuda or torch.")] = "numba-cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="float32, float16 or bfloat16 (comma list for several).")] = "float32",
    shape: Annotated[Optional[list[str]], typer.Option(
        "--shape", help="DxK (hidden x intermediate), repeatable or comma list (default: 4096x11008 and 5120x13824, ProSparse 7B and 13B).")] = None,
    sparsity: Annotated[Optional[list[str]], typer.Option(
        "--sparsity", help="Target activation sparsities, comma list (default: 0.5,0.7,0.9).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Predictor coefficient (Eq. 2).")] = 1.0,
    threshold: Annotated[float, typer.Option("--threshold", help="Activation threshold: 0 = ReLU, T = FATReLU.")] = 0.0,
    batch: Annotated[int, typer.Option("--batch", help="Decode rows per call (each has its own mask).")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch and Numba (default: all cores).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats per variant (interleaved).")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed calls per variant first (JIT, caches).")] = 2,
    flush: Annotated[bool, typer.Option("--flush/--no-flush", help="Evict caches before every timed call.")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic weights.")] = 0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the rows as a JSON list to FILE.")] = None,
) -> None:
    """Benchmark one MLP block: torch dense vs predictor + sparse kernels (fused, non-fused, no AS),
    or with --method cats|teal|wisparse|rsparse a SiLU block vs that method's kernels at each target sparsity
    (speedup, its byte-ideal, bandwidth against the machine's streaming read). Sets
    OMP_WAIT_POLICY=PASSIVE unless it is set."""
    shapes = parse_shapes(shape)
    sparsities = parse_sparsities(sparsity)
    if repeats < 1 or warmup < 0 or batch < 1:
        raise UserError("--repeats and --batch must be >= 1, --warmup >= 0")
    if alpha < 0 or alpha != alpha:
        raise UserError("--alpha must be a number >= 0")

    omp_warning = passive_openmp()
    if omp_warning:
        typer.echo(f"warning: {omp_warning}", err=True)
    omp_note = wait_policy_note()

    from tqdm import tqdm

    from sparseinfer_dse.engine.kernel_bench import KernelBench, bench_device, run_kernel_bench, threads_of

    bench = KernelBench(backend, tuple(_split([dtype])), tuple(shapes) or KernelBench.shapes,
                        tuple(sparsities) or KernelBench.sparsities, alpha, threshold, batch, threads, repeats,
                        warmup, flush, seed, method, tuple(_ranks(rank)))
    total = bench.cases * repeats
    with tqdm(total=total, desc="bench kernels", unit="rep", disable=total < 20, leave=False) as bar:
        rows = run_kernel_bench(bench, progress=bar)
    device = bench_device(backend)
    typer.echo(f"backend {rows[0]['backend']} on {device}, threads {threads_of(device)}, alpha {alpha}, "
               f"threshold {threshold}, batch {batch}, {repeats} repeats (medians; sparse p10-p90), caches "
               f"{'flushed' if flush else 'warm'}, {omp_note}")
    for row in rows:
        row["omp_wait_policy"] = omp_note
    typer.echo(format_table(rows) if method == "sparseinfer" else format_method_table(rows))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_path, json.dumps(rows, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")
