"""Timing pieces the kernel benchmarks share: a CPU/GPU timer, a cache flush sized from the
last-level cache, a streaming read of N bytes (the machine's read bandwidth), percentiles."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

ROTATIONS = 4  # distinct decode inputs, rotated over variants and repeats (none runs warm on another's x)


def pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs) * 1e3, q))


class Timer:
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


class Flusher:
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


def reader(nbytes: float, device: str) -> Callable[[], Any]:
    """One streaming read of `nbytes`: torch's sum over a float32 buffer of that size (on this 2-core
    CPU it streams faster than a plain Numba loop: 23 vs 16-18 GB/s over 1 GiB), the floor a kernel
    reading that much can reach."""
    import torch

    buf = torch.ones(max(1, int(nbytes) // 4), dtype=torch.float32, device=device)
    return lambda: buf.sum()


def time_interleaved(fns: dict[str, list[Callable[[], Any]]], device: str, *, repeats: int, warmup: int,
                     flush: bool, progress: Any = None) -> tuple[dict[str, list[float]], int]:
    """Seconds per call of every variant (a list of ROTATIONS calls each, one per decode input),
    `repeats` interleaved rounds after `warmup` untimed ones, caches flushed before each timed call;
    returns the times and the flush size."""
    timer, flusher = Timer(device), Flusher(device, flush)
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
    return times, flusher.nbytes


def threads_of(device: str) -> Optional[int]:
    if device == "cuda":
        return None
    import torch

    return torch.get_num_threads()
