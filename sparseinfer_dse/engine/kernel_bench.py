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
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sparseinfer_kernels.api import get_backend
from sparseinfer_kernels.synthetic import synthetic_mlp

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

    @property
    def cases(self) -> int:
        return len(self.dtypes) * len(self.shapes) * len(self.sparsities)


def run_kernel_bench(bench: KernelBench, progress: Any = None) -> list[dict[str, Any]]:
    """One JSON row per (dtype, shape, sparsity); `progress` (a tqdm bar) advances once per repeat."""
    import torch

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
                rows.append(bench_one(be, device, d, k, sp, getattr(torch, name), alpha=bench.alpha,
                                      threshold=bench.threshold, batch=bench.batch, repeats=bench.repeats,
                                      warmup=bench.warmup, flush=bench.flush, seed=bench.seed, progress=progress))
    return rows


def bench_device(backend: str) -> str:
    """Where the backend's tensors live (the CUDA simulator runs on the CPU)."""
    return "cuda" if backend == "numba-cuda" and not os.environ.get("NUMBA_ENABLE_CUDASIM") else "cpu"


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


def llc_bytes() -> Optional[int]:
    """The last-level cache of this CPU in bytes (sysconf, else /sys), None if unknown."""
    try:
        v = os.sysconf("SC_LEVEL3_CACHE_SIZE")
        if v and v > 0:
            return int(v)
    except (ValueError, OSError, AttributeError):
        pass
    best = 0
    for idx in range(8):
        try:
            text = open(f"/sys/devices/system/cpu/cpu0/cache/index{idx}/size").read().strip().upper()
        except OSError:
            break
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            best = max(best, int(text.rstrip("KMG")) * mult)
        except ValueError:
            pass
    return best or None


def flush_bytes(device: str) -> int:
    """What a flush must touch to evict the last-level cache: 4x its size, at least 64 MiB (CPU);
    256 MiB on a GPU (its L2 is at most 60-ish MiB)."""
    if device == "cuda":
        return 256 << 20
    return max(64 << 20, 4 * (llc_bytes() or 0))


class _Flusher:
    """Evicts the last-level cache (CPU: reads `flush_bytes`; GPU: writes 256 MiB)."""

    def __init__(self, device: str, enabled: bool):
        import torch

        self.enabled = enabled
        self.buf = None
        self.nbytes = flush_bytes(device) if enabled else 0
        if enabled:
            self.buf = torch.ones(self.nbytes // 4, dtype=torch.float32, device=device)

    def __call__(self) -> None:
        if self.buf is not None:
            if self.buf.is_cuda:
                self.buf.add_(1.0)
            else:
                float(self.buf.sum())


def _reader(nbytes: float, device: str) -> Callable[[], Any]:
    """One streaming read of `nbytes`: torch's sum over a float32 buffer of that size (on this 2-core
    CPU it streams faster than a plain Numba loop: 23 vs 16-18 GB/s over 1 GiB), the floor a kernel
    reading that much can reach."""
    import torch

    buf = torch.ones(max(1, int(nbytes) // 4), dtype=torch.float32, device=device)
    return lambda: buf.sum()


ROTATIONS = 4  # distinct decode inputs, rotated over variants and repeats (none runs warm on another's x)


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
    read_dense, read_sparse = _reader(dense_bytes, device), _reader(sparse_bytes, device)
    fns["read_dense"] = [read_dense] * ROTATIONS
    fns["read_sparse"] = [read_sparse] * ROTATIONS
    timer, flusher = _Timer(device), _Flusher(device, flush)
    for _ in range(warmup):
        for variants in fns.values():
            for fn in variants:
                fn()
    times: dict[str, list[float]] = {n: [] for n in fns}
    names = list(fns)
    for r in range(repeats):
        for j, name in enumerate(names):  # interleaved: drift and other load hit every variant alike
            flusher()
            times[name].append(timer(fns[name][(r + j) % ROTATIONS]))  # each variant on another x than the last
        if progress is not None:
            progress.update(1)

    med = {n: float(np.median(v)) * 1e3 for n, v in times.items()}
    row: dict[str, Any] = dict(
        backend=backend.name, device=device, dtype=str(dtype).replace("torch.", ""), d=d, k=k, batch=batch,
        sparsity=sparsity, actual_sparsity=float(zero.float().mean()),
        predicted_sparsity=float(c.predicted_sparse.mean() / k), rows_computed_frac=comp_rows / k,
        precision=tp / max(1, int(pred.sum())), recall=tp / max(1, int(zero.sum())),
        alpha=alpha, threshold=threshold, repeats=repeats, flush=flush, flush_bytes=flusher.nbytes,
        llc_bytes=llc_bytes() if device == "cpu" else None, rotations=ROTATIONS,
        threads=threads_of(device),
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


def threads_of(device: str) -> Optional[int]:
    if device == "cuda":
        return None
    import torch

    return torch.get_num_threads()
