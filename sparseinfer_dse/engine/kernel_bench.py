"""One MLP block timed: dense torch vs the SparseInfer kernels (what `bench kernels` runs).

Inputs are synthetic (``sparseinfer_kernels.synthetic``): the gate rows are built so that the
requested fraction of gate pre-activations is negative and the sign predictor can see it; the
measured actual and predicted sparsity are reported next to the target. Every repeat runs, in
turn, the torch dense block (``F.linear`` gate/up, activation, down, in the weights' dtype), the
predictor alone (as the sparse block runs it: ``backend.predictor``, arguments converted once; and
the public ``predict()`` call, which adds argument checks and wraps the mask in a tensor), a torch
reduction (``amax``) over the same sign words (what merely reading them costs, for scale), and the
full sparse block fused / non-fused / without actual sparsity, and two plain streaming reads of the
same byte counts. `limit_gbps`, the machine's read bandwidth, is the faster of the streaming read
and torch's dense GEMV over the same bytes in the same run; each kernel's `limit_ratio` is its
bandwidth over it. Caches are flushed before each timed call (as if the other layers' weights had just
gone through them) with a read of 4x the last-level cache, and successive variants run on different
decode inputs, so none finds another's data warm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sparseinfer_kernels.api import get_backend
from sparseinfer_kernels.synthetic import synthetic_mlp

from sparseinfer_dse.engine.bench_timing import ROTATIONS, llc_bytes, pct, reader, threads_of, time_interleaved
from sparseinfer_dse.engine.method_bench import METHODS, bench_method_one
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.machine import set_threads

DEFAULT_SHAPES = ((4096, 11008), (5120, 13824))  # ProSparse-Llama2-7B, -13B (d x k)
DEFAULT_SPARSITIES = (0.5, 0.7, 0.9)
VARIANTS = ("dense", "sign_read", "predictor", "predict_call", "sparse", "sparse_nofuse", "sparse_noas", "read_dense",
            "read_sparse")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class KernelBench:
    """One benchmark run: every dtype x shape x sparsity, `repeats` interleaved rounds each."""

    backend: str = "numba-cpu"
    dtypes: tuple[str, ...] = ("float32",)
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES
    alpha: float = 1.0
    threshold: float = 0.0
    batch: int = 1
    threads: Optional[int] = None
    repeats: int = 10
    warmup: int = 2
    flush: bool = True
    seed: int = 0
    method: str = "sparseinfer"  # or cats / teal / wisparse / rsparse (engine/method_bench.py)
    ranks: tuple[int, ...] = (0,)  # rsparse: the low-rank remainder's ranks (one row per rank)

    @property
    def cases(self) -> int:
        return len(self.dtypes) * len(self.shapes) * len(self.sparsities) * len(self.ranks)


def run_kernel_bench(bench: KernelBench, progress: Any = None) -> list[dict[str, Any]]:
    """One JSON row per (dtype, shape, sparsity); `progress` (a tqdm bar) advances once per repeat."""
    import torch

    if bench.method not in ("sparseinfer", *METHODS):
        raise UserError(f"--method {bench.method!r}: use sparseinfer, {', '.join(METHODS)}")
    if bench.ranks != (0,) and bench.method != "rsparse":
        raise UserError("--rank is rsparse's (the rank of its low-rank remainder)")
    if any(r < 0 for r in bench.ranks) or any(r > min(s) for r in bench.ranks for s in bench.shapes):
        raise UserError("--rank must be >= 0 and at most the smaller side of every --shape")
    bad = [d for d in bench.dtypes if d not in DTYPES]
    if bad:
        raise UserError(f"--dtype {bad[0]!r}: use float32, float16 or bfloat16")
    try:
        be = get_backend(bench.backend)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    device = bench_device(bench.backend)
    if bench.threads is not None:
        set_threads(bench.threads)
    rows = []
    for name in bench.dtypes:
        for d, k in bench.shapes:
            for sp in bench.sparsities:
                if progress is not None:
                    progress.set_postfix_str(f"{name} {d}x{k} s={sp}")
                common = dict(batch=bench.batch, repeats=bench.repeats, warmup=bench.warmup, flush=bench.flush,
                              seed=bench.seed, progress=progress)
                if bench.method == "sparseinfer":
                    rows.append(bench_one(be, device, d, k, sp, getattr(torch, name), alpha=bench.alpha,
                                          threshold=bench.threshold, **common))
                else:
                    for r in bench.ranks:
                        rows.append(bench_method_one(be, device, bench.method, d, k, sp, getattr(torch, name),
                                                     rank=r, **common))
    return rows


def bench_device(backend: str) -> str:
    """Where the backend's tensors live (the CUDA simulator runs on the CPU)."""
    return "cuda" if backend == "numba-cuda" and not os.environ.get("NUMBA_ENABLE_CUDASIM") else "cpu"


def bench_one(backend, device: str, d: int, k: int, sparsity: float, dtype, *, alpha: float, threshold: float,
              batch: int, repeats: int, warmup: int, flush: bool, seed: int, progress=None) -> dict[str, Any]:
    """Time the variants for one shape and sparsity; returns one JSON row.

    Besides the kernels, two streaming reads run in the same rounds: one of the dense block's bytes
    (`read_dense`: the machine's read bandwidth, `limit_gbps`) and one of the bytes the sparse block
    must touch at this sparsity (`read_sparse`: the time floor for the sparse block)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    wg, wu, wd, x_all = synthetic_mlp(d, k, sparsity, dtype, batch=batch * ROTATIONS, seed=seed)
    wg, wu, wd, x_all = (t.to(device) for t in (wg, wu, wd, x_all))
    xs = [x_all[i * batch:(i + 1) * batch] for i in range(ROTATIONS)]
    x = xs[0]
    prep = backend.prepare(wg, wu, wd)
    thr = torch.tensor(threshold, dtype=dtype, device=device)

    # What the kernels do, and how good the predictor is, on the first input (the bytes they touch).
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

    def dense(xi):
        def run():
            g = F.linear(xi, wg)
            h = torch.where(g >= thr, g, torch.zeros_like(g)) * F.linear(xi, wu)
            return F.linear(h, wd)
        return run

    def sparse(xi, **kw):
        return lambda: backend.forward(prep, xi, alpha=alpha, threshold=threshold, **kw)

    per_x: dict[str, Callable[[Any], Callable[[], Any]]] = {
        "dense": dense,
        "sign_read": lambda xi: (lambda: prep.state["signs"].amax()),
        "predictor": lambda xi: backend.predictor(prep, xi, alpha),
        "predict_call": lambda xi: (lambda: backend.predict(prep, xi, alpha)),
        "sparse": sparse,
        "sparse_nofuse": lambda xi: sparse(xi, fused=False),
        "sparse_noas": lambda xi: sparse(xi, actual_sparsity=False),
    }
    fns = {name: [make(xi) for xi in xs] for name, make in per_x.items()}
    read_dense, read_sparse = reader(dense_bytes, device), reader(sparse_bytes, device)
    fns["read_dense"] = [read_dense] * ROTATIONS
    fns["read_sparse"] = [read_sparse] * ROTATIONS
    times, flushed = time_interleaved(fns, device, repeats=repeats, warmup=warmup, flush=flush, progress=progress)

    med = {n: float(np.median(v)) * 1e3 for n, v in times.items()}
    row: dict[str, Any] = dict(
        backend=backend.name, device=device, dtype=str(dtype).replace("torch.", ""), d=d, k=k, batch=batch,
        sparsity=sparsity, actual_sparsity=float(zero.float().mean()),
        predicted_sparsity=float(c.predicted_sparse.mean() / k), rows_computed_frac=comp_rows / k,
        precision=tp / max(1, int(pred.sum())), recall=tp / max(1, int(zero.sum())),
        alpha=alpha, threshold=threshold, repeats=repeats, flush=flush, flush_bytes=flushed,
        llc_bytes=llc_bytes() if device == "cpu" else None, rotations=ROTATIONS,
        threads=threads_of(device),
    )
    for name in fns:
        row[f"{name}_ms"] = med[name]
        row[f"{name}_p10_ms"] = pct(times[name], 10)
        row[f"{name}_p90_ms"] = pct(times[name], 90)
    row["speedup"] = med["dense"] / med["sparse"]
    row["speedup_nofuse"] = med["dense"] / med["sparse_nofuse"]
    row["speedup_noas"] = med["dense"] / med["sparse_noas"]
    row["predictor_share"] = med["predictor"] / med["sparse"]
    row["predict_call_share"] = med["predict_call"] / med["sparse"]
    row["dense_bytes"], row["sparse_bytes"] = dense_bytes, sparse_bytes
    row["gbps"] = sparse_bytes / (med["sparse"] / 1e3) / 1e9
    row["dense_gbps"] = dense_bytes / (med["dense"] / 1e3) / 1e9
    row["read_gbps"] = dense_bytes / (med["read_dense"] / 1e3) / 1e9
    # The machine's read bandwidth, bounded from below by the fastest read of these bytes in this run:
    # the plain streaming read or torch's dense GEMV (which on this CPU streams faster than a sum).
    row["limit_gbps"] = max(row["read_gbps"], row["dense_gbps"])
    row["limit_ratio"] = row["gbps"] / row["limit_gbps"]
    row["dense_limit_ratio"] = row["dense_gbps"] / row["limit_gbps"]
    row["sparse_floor_ratio"] = med["read_sparse"] / med["sparse"]  # the floor's time over ours (1 = at the floor)
    row["predictor_gbps"] = k * nw * 4 / (med["predictor"] / 1e3) / 1e9
    row["sign_read_gbps"] = k * nw * 4 / (med["sign_read"] / 1e3) / 1e9
    row["extra_bytes"] = prep.extra_bytes
    return row
