"""What every numba-cuda kernel module shares: the simulator flag, weight element widening, torch
tensors as kernel arguments and torch's current stream.

A module of its own so ``cuda.py`` (the MLP kernels) and ``channels_cuda.py`` (the channel-sparse
linear, which ``cuda.py``'s backend delegates to) both import it without importing each other.

Half precision: float16 arrays are read as numba float16 and widened; bfloat16 comes in as int16
bits and is widened by a shift and a bitcast (the simulator, which has no libdevice or LLVM,
uses a numpy bitcast instead).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import cuda, types
from numba.cuda import config as _cuda_config

SIM = bool(_cuda_config.ENABLE_CUDASIM)


def to_f32(v):
    """float32 / float16 / int16 (bfloat16 bits) element -> float32 (simulator version)."""
    if v.dtype == np.int16:
        return np.array([np.uint32(np.uint16(v.view(np.uint16))) << np.uint32(16)], dtype=np.uint32).view(np.float32)[0]
    return np.float32(v)


if not SIM:
    from llvmlite import ir
    from numba.cuda.extending import intrinsic

    @intrinsic
    def _to_f32_intrinsic(typingctx, v):
        # LLVM IR in the caller: no device-function compile (which would need a GPU for compile_ptx).
        if v not in (types.float32, types.float16, types.int16):
            return None

        def codegen(context, builder, signature, args):
            (val,) = args
            if v == types.float32:
                return val
            if v == types.float16:
                return context.cast(builder, val, types.float16, types.float32)
            wide = builder.zext(val, ir.IntType(32))
            wide = builder.shl(wide, ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(wide, ir.FloatType())

        return types.float32(v), codegen

    to_f32 = _to_f32_intrinsic  # noqa: F811


def dev(t: torch.Tensor):
    """A torch tensor as a kernel argument: numba device array (GPU) or numpy array (simulator)."""
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    if SIM:
        return t.numpy()
    return cuda.as_cuda_array(t)


def current_stream():
    """torch's current CUDA stream as a numba stream (read at each launch), 0 in the simulator."""
    if SIM:
        return 0
    return cuda.external_stream(torch.cuda.current_stream().cuda_stream)
