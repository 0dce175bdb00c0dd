"""What machine a figure was measured on, and with how many threads: recorded next to every timing
the tool writes. `set_threads` sets the torch and Numba thread counts together."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Optional

from sparseinfer_dse.errors import OptionError


def cpu_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    """A torch device in words: the GPU's name, or the CPU's name and logical CPU count."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} logical CPUs)"


def thread_counts() -> dict[str, Optional[int]]:
    """The thread counts torch and Numba run with now (recorded next to a timing)."""
    import torch

    try:
        import numba

        nb: Optional[int] = numba.get_num_threads()
    except ImportError:  # pragma: no cover - numba is a dependency
        nb = None
    return {"torch": torch.get_num_threads(), "numba": nb}


def set_threads(n: int) -> None:
    """torch and Numba thread counts (Numba's cannot exceed NUMBA_NUM_THREADS, set at import)."""
    import numba
    import torch

    if n < 1:
        raise OptionError("threads", "{threads} must be at least 1")
    if n > numba.config.NUMBA_NUM_THREADS:
        raise OptionError("threads", f"{{threads}} {n} exceeds Numba's maximum here ({numba.config.NUMBA_NUM_THREADS}; "
                        "set NUMBA_NUM_THREADS before starting to raise it)")
    # Numba first: starting its OpenMP pool can reset the OpenMP thread count torch reads when both
    # share one libgomp, so torch's setting has to come after.
    numba.set_num_threads(n)
    torch.set_num_threads(n)
