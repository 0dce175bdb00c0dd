"""OMP_WAIT_POLICY=PASSIVE for every command that times or runs the Numba CPU kernels.

A decode step alternates torch ops (torch's own libgomp) and Numba kernels (Numba's `omp` layer, a
second libgomp). With the default policy each runtime's idle threads spin for milliseconds after
every parallel region and take the cores from the other one: measured here on one synthetic-7b
layer, the sparse step fell from about 2.0x faster than dense to no faster at all. libgomp reads
the variable when it is loaded, so it must be set before torch (and Numba's pool) start; a value
the user already set wins (run with OMP_WAIT_POLICY=ACTIVE to measure spinning threads).
"""

from __future__ import annotations

import os
import sys
from typing import Optional


def passive_openmp() -> Optional[str]:
    """Set OMP_WAIT_POLICY=PASSIVE unless it is set. Returns a warning when torch is already loaded
    (too late for its threads), else None."""
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if "torch" in sys.modules:
        return ("torch was loaded before OMP_WAIT_POLICY=PASSIVE could be set; its idle threads spin and can slow "
                "the Numba kernels down: start the process with OMP_WAIT_POLICY=PASSIVE")
    return None


def wait_policy_note() -> str:
    """The policy in effect, as recorded next to timings."""
    return f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
