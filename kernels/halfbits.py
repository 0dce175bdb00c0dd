"""Bit-level helpers for Numba on the CPU, which has no float16/bfloat16 types.

Half-precision weights travel into ``njit`` code as 16-bit integer views of the same memory.
The integer type says which format the bits are in:

* ``uint16`` holds **bfloat16** bits (``t.view(torch.int16).numpy().view(np.uint16)``);
* ``int16`` holds **float16** bits (``t.view(torch.int16).numpy()``);
* ``float32`` arrays are used as they are.

``to_f32(v)`` turns one element of any of these arrays into a float32 (bf16: shift left 16 and
bitcast; fp16: bitcast to ``half`` and ``fpext``, which LLVM lowers to ``vcvtph2ps`` with F16C).
``sign_bit_f32`` and ``popcount`` serve the predictor; ``fetch_add`` (an atomic counter) lets the
threads of a ``prange`` take chunks of rows dynamically.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def bf16_bits_to_f32(typingctx, bits):
    """bfloat16 bits (uint16) -> float32."""
    if not (isinstance(bits, types.Integer) and bits.bitwidth == 16):
        return None

    def codegen(context, builder, signature, args):
        wide = builder.zext(args[0], ir.IntType(32))
        wide = builder.shl(wide, ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(wide, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def f16_bits_to_f32(typingctx, bits):
    """IEEE float16 bits (int16) -> float32."""
    if not (isinstance(bits, types.Integer) and bits.bitwidth == 16):
        return None

    def codegen(context, builder, signature, args):
        half = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(half, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def sign_bit_f32(typingctx, value):
    """The sign bit of a float32 as uint32 0 or 1 (-0.0 and negative NaNs give 1)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        return builder.lshr(bits, ir.Constant(ir.IntType(32), 31))

    return types.uint32(value), codegen


@intrinsic
def popcount(typingctx, value):
    """Number of set bits of an integer, as int64 (LLVM ``ctpop``: one ``popcnt`` instruction).

    Numba widens ``uint32 ^ uint32`` to 64 bits; the count is the same."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        count = builder.ctpop(args[0])
        return builder.zext(count, ir.IntType(64))

    return types.int64(value), codegen


@intrinsic
def fetch_add(typingctx, counter):
    """Atomically add 1 to ``counter[0]`` (a 1-D int64 array) and return the old value.

    Lets the threads of a ``prange`` take chunks of work dynamically (see ``cpu.py``)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        one = ir.Constant(ir.IntType(64), 1)
        return builder.atomic_rmw("add", ary.data, one, "acq_rel")  # publishes the work done before it

    return types.int64(counter), codegen


@intrinsic
def load_acquire(typingctx, counter):
    """``counter[0]`` read atomically with acquire order (a 1-D int64 array): a thread that waits for
    a ``fetch_add`` count sees the writes made before those adds (``cpu.block_kernel``'s final sum)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(ary.data, "acquire", 8)

    return types.int64(counter), codegen


def to_f32(value):  # pragma: no cover - replaced by the overload inside njit code
    """Element of a float32 / int16 (fp16 bits) / uint16 (bf16 bits) array -> float32."""
    raise NotImplementedError("to_f32 is only callable from njit code")


@overload(to_f32, inline="always")
def _to_f32_overload(value):
    if value == types.float32:
        return lambda value: value
    if value == types.uint16:
        return lambda value: bf16_bits_to_f32(value)
    if value == types.int16:
        return lambda value: f16_bits_to_f32(value)
    return None


def numba_view(t) -> np.ndarray:
    """A CPU torch tensor as the numpy array the njit kernels take (no copy).

    float32 stays float32, float16 becomes int16 bits, bfloat16 becomes uint16 bits.
    """
    import torch

    if t.dtype == torch.float32:
        return t.numpy()
    if t.dtype == torch.float16:
        return t.view(torch.int16).numpy()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    raise ValueError(f"unsupported dtype {t.dtype}; use float32, float16 or bfloat16")
