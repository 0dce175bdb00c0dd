"""One SiLU MLP block timed: dense torch vs a calibrated method's kernels (`bench kernels --method`).

Weights are random (normal, scaled 1/sqrt(fan-in), as a trained layer's magnitude), the decode
inputs normal; the thresholds are the quantiles of the method's scores over the benchmark's own
inputs, so each projection skips the target fraction:

- `cats`: the row-sparse MLP kernel without prediction, SiLU magnitude threshold (gate read in full,
  up and down for the kept rows);
- `teal`: three input-channel-sparse products (gate and up skip small |x_j|, down small |h_i|);
- `wisparse`: the same with the scores scaled by the weights' column norms;
- `rsparse`: wisparse's scores, plus each projection's rank-r remainder of the skipped channels
  (the SVD factors of the random weights), timed as the engine runs it: one `channel_mlp` call
  whose down threshold is set on the dense intermediate (so down skips about the target).

Every round also runs torch's dense block (F.linear gate/up, SiLU, down) and two streaming reads
(the dense block's bytes, and the bytes the method must touch), interleaved, caches flushed before
each timed call, variants rotated over decode inputs, as `kernel_bench.bench_one` does. `ideal` is
the byte-ideal speedup (dense bytes / bytes touched); `ideal_ratio` = speedup / ideal.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from sparseinfer_dse.engine.bench_timing import ROTATIONS, llc_bytes, pct, reader, threads_of, time_interleaved
from sparseinfer_dse.engine.lowrank import svd_factors
from sparseinfer_dse.engine.thresholds import WEIGHTED

METHODS = ("cats", "teal", "wisparse", "rsparse")


def _quantile(v: torch.Tensor, q: float) -> float:
    return float(np.quantile(v.float().reshape(-1).cpu().numpy(), q))


def bench_method_one(backend, device: str, method: str, d: int, k: int, sparsity: float, dtype, *, batch: int,
                     repeats: int, warmup: int, flush: bool, seed: int, rank: int = 0,
                     progress=None) -> dict[str, Any]:
    """Time dense vs `method` at one shape and target sparsity (rsparse: and `rank`); one JSON row."""
    g = torch.Generator().manual_seed(seed)
    wg = (torch.randn(k, d, generator=g) / d ** 0.5).to(dtype).to(device)
    wu = (torch.randn(k, d, generator=g) / d ** 0.5).to(dtype).to(device)
    wd = (torch.randn(d, k, generator=g) / k ** 0.5).to(dtype).to(device)
    x_all = torch.randn(batch * ROTATIONS, d, generator=g).to(dtype).to(device)
    xs = [x_all[i * batch:(i + 1) * batch] for i in range(ROTATIONS)]
    xf = x_all.float()
    gate = xf @ wg.float().t()
    act = F.silu(gate)
    h = act * (xf @ wu.float().t())
    es = wg.element_size()
    dense_bytes = 3 * k * d * es

    def dense(xi):
        return lambda: F.linear(F.silu(F.linear(xi, wg)) * F.linear(xi, wu), wd)

    if method == "cats":
        prep = backend.prepare(wg, wu, wd)
        t_act = _quantile(act.abs(), sparsity)
        res = backend.forward(prep, xs[0], alpha=None, threshold=t_act, activation="silu", with_counters=True)
        kept = float(res.counters.rows_computed.mean())
        skipped = 1.0 - kept / k
        sparse_bytes = (k + 2 * kept) * d * es
        extra = prep.extra_bytes

        sparse_fns = [(lambda xi=xi: backend.forward(prep, xi, alpha=None, threshold=t_act, activation="silu"))
                      for xi in xs]
    else:
        preps = {n: backend.prepare_linear(w) for n, w in (("gate", wg), ("up", wu), ("down", wd))}
        if method in WEIGHTED:
            scale = {n: w.float().norm(dim=0).to(device) for n, w in (("gate", wg), ("up", wu), ("down", wd))}
        else:
            scale = {"gate": None, "up": None, "down": None}
        ones = {"gate": torch.ones(d), "up": torch.ones(d), "down": torch.ones(k)}
        sc = {n: (scale[n].cpu() if scale[n] is not None else ones[n]) for n in scale}
        thr = {"gate": _quantile(xf.abs().cpu() * sc["gate"], sparsity), "up": _quantile(xf.abs().cpu() * sc["up"], sparsity),
               "down": _quantile(h.abs().cpu() * sc["down"], sparsity)}
        h_in = [hh.to(dtype) for hh in h.split(batch)]

        def run_block(xi, hi):
            def run():
                a = backend.channel_linear(preps["gate"], xi, threshold=thr["gate"], scale=scale["gate"])
                b = backend.channel_linear(preps["up"], xi, threshold=thr["up"], scale=scale["up"])
                # down on the intermediate of the dense block (its sparsity is what the threshold sets)
                return a, b, backend.channel_linear(preps["down"], hi, threshold=thr["down"], scale=scale["down"])
            return run

        counts = [backend.channel_linear(preps[n], v, threshold=thr[n], scale=scale[n], with_counts=True).kept
                  for n, v in (("gate", xs[0]), ("up", xs[0]), ("down", h_in[0]))]
        kept_frac = [float(np.mean(c)) / n for c, n in zip(counts, (d, d, k))]
        skipped = 1.0 - float(np.mean(kept_frac))
        sparse_bytes = sum(kf * k * d * es for kf in kept_frac)
        extra = sum(p.extra_bytes for p in preps.values())
        if method != "rsparse":
            sparse_fns = [run_block(xi, hi) for xi, hi in zip(xs, h_in)]
        else:
            lrs = None
            if rank:
                lrs = []
                for w in (wg, wu, wd):
                    a, u = svd_factors(w, rank)
                    lrs.append(backend.prepare_lowrank(a.to(dtype).to(device), u.to(dtype).to(device)))
                # the remainder reads r values per skipped channel and all of u (r x n_out) per projection
                sparse_bytes += sum(((1 - kf) * n_in + n_out) * rank * es
                                    for kf, n_in, n_out in zip(kept_frac, (d, d, k), (k, k, d)))
                extra += sum(lr.extra_bytes for lr in lrs)
            order = (preps["gate"], preps["up"], preps["down"])
            thr3, sc3 = (thr["gate"], thr["up"], thr["down"]), (scale["gate"], scale["up"], scale["down"])
            sparse_fns = [(lambda xi=xi: backend.channel_mlp(order, xi, thresholds=thr3, scales=sc3, lowrank=lrs))
                          for xi in xs]

    fns: dict[str, list[Callable[[], Any]]] = {"dense": [dense(xi) for xi in xs], "sparse": sparse_fns}
    fns["read_dense"] = [reader(dense_bytes, device)] * ROTATIONS
    fns["read_sparse"] = [reader(sparse_bytes, device)] * ROTATIONS
    times, flushed = time_interleaved(fns, device, repeats=repeats, warmup=warmup, flush=flush, progress=progress)
    med = {n: float(np.median(v)) * 1e3 for n, v in times.items()}
    row: dict[str, Any] = dict(
        method=method, rank=rank if method == "rsparse" else None, backend=backend.name, device=device,
        dtype=str(dtype).replace("torch.", ""), d=d, k=k,
        batch=batch, sparsity=sparsity, skipped=skipped, repeats=repeats, flush=flush, flush_bytes=flushed,
        llc_bytes=llc_bytes() if device == "cpu" else None, rotations=ROTATIONS, threads=threads_of(device),
    )
    for name in fns:
        row[f"{name}_ms"] = med[name]
        row[f"{name}_p10_ms"] = pct(times[name], 10)
        row[f"{name}_p90_ms"] = pct(times[name], 90)
    row["speedup"] = med["dense"] / med["sparse"]
    row["dense_bytes"], row["sparse_bytes"] = dense_bytes, sparse_bytes
    row["ideal"] = dense_bytes / sparse_bytes
    row["ideal_ratio"] = row["speedup"] / row["ideal"]
    row["gbps"] = sparse_bytes / (med["sparse"] / 1e3) / 1e9
    row["dense_gbps"] = dense_bytes / (med["dense"] / 1e3) / 1e9
    row["read_gbps"] = dense_bytes / (med["read_dense"] / 1e3) / 1e9
    row["limit_gbps"] = max(row["read_gbps"], row["dense_gbps"])
    row["limit_ratio"] = row["gbps"] / row["limit_gbps"]
    row["sparse_floor_ratio"] = med["read_sparse"] / med["sparse"]
    row["extra_bytes"] = extra
    return row
