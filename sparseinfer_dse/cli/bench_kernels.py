"""`sparseinfer-dse bench kernels`: one MLP block, dense torch vs the SparseInfer kernels.

Inputs are synthetic (``sparseinfer_kernels.synthetic``): the gate rows are built so that the
requested fraction of gate pre-activations is negative and the sign predictor can see it; the
measured actual and predicted sparsity are reported next to the target. Every repeat runs, in
turn, the torch dense block (``F.linear`` gate/up, activation, down, in the weights' dtype), the
predictor alone (as the sparse block runs it: ``backend.predictor``, arguments converted once; and
the public ``predict()`` call, which adds argument checks and wraps the mask in a tensor), a torch
reduction (``amax``) over the same sign words (what merely reading them costs, for scale), and the
full sparse block fused / non-fused / without actual sparsity; caches
are flushed before each timed call (as if the other layers' weights had just gone through them).
Heavy imports happen inside the command so that ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.openmp import passive_openmp, wait_policy_note

DEFAULT_SHAPES = ("4096x11008", "5120x13824")  # ProSparse-Llama2-7B, -13B (d x k)
VARIANTS = ("dense", "sign_read", "predictor", "predict_call", "sparse", "sparse_nofuse", "sparse_noas")


def _split(values: Optional[list[str]]) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def parse_shapes(values: Optional[list[str]]) -> list[tuple[int, int]]:
    shapes = []
    for s in _split(values) or list(DEFAULT_SHAPES):
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
    for s in _split(values) or ["0.5", "0.7", "0.9"]:
        try:
            v = float(s)
        except ValueError:
            raise UserError(f"--sparsity {s!r} is not a number") from None
        if not 0.0 <= v <= 1.0:
            raise UserError(f"--sparsity {s!r} must be between 0 and 1")
        out.append(v)
    return out


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs) * 1e3, q))


class _Timer:
    """Wall time on CPU; CUDA events (after a device sync) on GPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


class _Flusher:
    """Evicts the last-level cache (CPU: reads 64 MiB; GPU: writes 256 MiB)."""

    def __init__(self, device: str, enabled: bool):
        import torch

        self.enabled = enabled
        self.buf = None
        if enabled:
            n = (256 if device == "cuda" else 64) * 2**20 // 4
            self.buf = torch.ones(n, dtype=torch.float32, device=device)

    def __call__(self) -> None:
        if self.buf is not None:
            if self.buf.is_cuda:
                self.buf.add_(1.0)
            else:
                float(self.buf.sum())


def bench_one(backend, device: str, d: int, k: int, sparsity: float, dtype, *, alpha: float, threshold: float,
              batch: int, repeats: int, warmup: int, flush: bool, seed: int, progress=None) -> dict[str, Any]:
    """Time the variants for one shape and sparsity; returns one JSON row."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sparseinfer_kernels.synthetic import synthetic_mlp

    wg, wu, wd, x = synthetic_mlp(d, k, sparsity, dtype, batch=batch, seed=seed)
    wg, wu, wd, x = (t.to(device) for t in (wg, wu, wd, x))
    prep = backend.prepare(wg, wu, wd)
    thr = torch.tensor(threshold, dtype=dtype, device=device)

    def dense():
        g = F.linear(x, wg)
        h = torch.where(g >= thr, g, torch.zeros_like(g)) * F.linear(x, wu)
        return F.linear(h, wd)

    def sparse(**kw):
        return lambda: backend.forward(prep, x, alpha=alpha, threshold=threshold, **kw)

    fns = {
        "dense": dense,
        "sign_read": lambda: prep.state["signs"].amax(),
        "predictor": backend.predictor(prep, x, alpha),
        "predict_call": lambda: backend.predict(prep, x, alpha),
        "sparse": sparse(),
        "sparse_nofuse": sparse(fused=False),
        "sparse_noas": sparse(actual_sparsity=False),
    }
    timer, flusher = _Timer(device), _Flusher(device, flush)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved: drift and other load hit every variant alike
            flusher()
            times[name].append(timer(fn))
        if progress is not None:
            progress.update(1)

    # What the kernels did, and how good the predictor was, on this input.
    res = backend.forward(prep, x, alpha=alpha, threshold=threshold, with_counters=True, return_mask=True)
    c = res.counters
    g = x.float() @ wg.float().t()
    zero = ~(g >= threshold) | (g == 0)  # activation exactly 0 (relu/fatrelu)
    pred = res.predicted_mask.to(zero.device)
    tp = int((pred & zero).sum())
    kept_rows = float((k - c.predicted_sparse).mean())
    comp_rows = float(c.rows_computed.mean())
    es = wg.element_size()
    nw = (d + 31) // 32
    sparse_bytes = k * nw * 4 + (kept_rows + 2 * comp_rows) * d * es
    dense_bytes = 3 * k * d * es
    med = {n: float(np.median(v)) * 1e3 for n, v in times.items()}
    row: dict[str, Any] = dict(
        backend=backend.name, device=device, dtype=str(dtype).replace("torch.", ""), d=d, k=k, batch=batch,
        sparsity=sparsity, actual_sparsity=float(zero.float().mean()),
        predicted_sparsity=float(c.predicted_sparse.mean() / k), rows_computed_frac=comp_rows / k,
        precision=tp / max(1, int(pred.sum())), recall=tp / max(1, int(zero.sum())),
        alpha=alpha, threshold=threshold, repeats=repeats, flush=flush,
        threads=_threads(device),
    )
    for name in fns:
        row[f"{name}_ms"] = med[name]
        row[f"{name}_p10_ms"] = _pct(times[name], 10)
        row[f"{name}_p90_ms"] = _pct(times[name], 90)
    row["speedup"] = med["dense"] / med["sparse"]
    row["speedup_nofuse"] = med["dense"] / med["sparse_nofuse"]
    row["speedup_noas"] = med["dense"] / med["sparse_noas"]
    row["predictor_share"] = med["predictor"] / med["sparse"]
    row["predict_call_share"] = med["predict_call"] / med["sparse"]
    row["gbps"] = sparse_bytes / (med["sparse"] / 1e3) / 1e9
    row["dense_gbps"] = dense_bytes / (med["dense"] / 1e3) / 1e9
    row["predictor_gbps"] = k * nw * 4 / (med["predictor"] / 1e3) / 1e9
    row["sign_read_gbps"] = k * nw * 4 / (med["sign_read"] / 1e3) / 1e9
    row["extra_bytes"] = prep.extra_bytes
    return row


def _threads(device: str) -> Optional[int]:
    if device == "cuda":
        return None
    import torch

    return torch.get_num_threads()


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'dtype':<9}{'d x k':>12}{'target':>7}{'actual':>7}{'pred':>6}{'dense ms':>10}{'sparse ms':>10}"
            f"{'p10-p90':>13}{'speedup':>8}{'nofuse':>7}{'noAS':>6}{'pred ms':>8}{'read':>7}{'share':>6}{'call':>6}"
            f"{'GB/s':>6}{'dense':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['dtype']:<9}{str(r['d']) + 'x' + str(r['k']):>12}{r['sparsity']:>7.2f}{r['actual_sparsity']:>7.2f}"
            f"{r['predicted_sparsity']:>6.2f}{r['dense_ms']:>10.2f}{r['sparse_ms']:>10.2f}"
            f"{r['sparse_p10_ms']:>6.2f}-{r['sparse_p90_ms']:<6.2f}{r['speedup']:>7.2f}x{r['speedup_nofuse']:>6.2f}x"
            f"{r['speedup_noas']:>5.2f}x{r['predictor_ms']:>8.3f}{r['sign_read_ms']:>7.3f}"
            f"{100 * r['predictor_share']:>5.0f}%{100 * r['predict_call_share']:>5.0f}%"
            f"{r['gbps']:>6.1f}{r['dense_gbps']:>6.1f}"
        )
    return "\n".join(lines)


def bench_kernels_command(
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
    """Benchmark one MLP block: torch dense vs predictor + sparse kernels (fused, non-fused, no AS).
    Sets OMP_WAIT_POLICY=PASSIVE unless it is set."""
    shapes = parse_shapes(shape)
    sparsities = parse_sparsities(sparsity)
    dtypes = _split([dtype])
    if repeats < 1 or warmup < 0 or batch < 1:
        raise UserError("--repeats and --batch must be >= 1, --warmup >= 0")
    if alpha < 0 or alpha != alpha:
        raise UserError("--alpha must be a number >= 0")

    omp_warning = passive_openmp()
    if omp_warning:
        typer.echo(f"warning: {omp_warning}", err=True)
    omp_note = wait_policy_note()

    import torch

    from sparseinfer_kernels.api import get_backend

    tdtypes = []
    for name in dtypes:
        if name not in ("float32", "float16", "bfloat16"):
            raise UserError(f"--dtype {name!r}: use float32, float16 or bfloat16")
        tdtypes.append(getattr(torch, name))
    try:
        be = get_backend(backend)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    device = "cuda" if backend == "numba-cuda" and not os.environ.get("NUMBA_ENABLE_CUDASIM") else "cpu"
    if threads is not None:
        if threads < 1:
            raise UserError("--threads must be >= 1")
        torch.set_num_threads(threads)
        import numba

        if threads > numba.config.NUMBA_NUM_THREADS:
            raise UserError(f"--threads {threads}: Numba allows at most {numba.config.NUMBA_NUM_THREADS} here")
        numba.set_num_threads(threads)

    from tqdm import tqdm

    rows = []
    total = len(shapes) * len(sparsities) * len(tdtypes) * repeats
    with tqdm(total=total, desc="bench kernels", unit="rep", disable=total < 20, leave=False) as bar:
        for td in tdtypes:
            for d, k in shapes:
                for sp in sparsities:
                    bar.set_postfix_str(f"{str(td).replace('torch.', '')} {d}x{k} s={sp}")
                    rows.append(bench_one(be, device, d, k, sp, td, alpha=alpha, threshold=threshold, batch=batch,
                                          repeats=repeats, warmup=warmup, flush=flush, seed=seed, progress=bar))
    typer.echo(f"backend {be.name} on {device}, threads {_threads(device)}, alpha {alpha}, threshold {threshold}, "
               f"batch {batch}, {repeats} repeats (medians; sparse p10-p90), caches {'flushed' if flush else 'warm'}, "
               f"{omp_note}")
    for row in rows:
        row["omp_wait_policy"] = omp_note
    typer.echo(format_table(rows))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_path, json.dumps(rows, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")
