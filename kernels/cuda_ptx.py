"""Compile every CUDA kernel (``cuda.py``, ``channels_cuda.py``) to PTX for given compute capabilities,
without a GPU.

Needs numba-cuda with NVRTC (``pip install "numba-cuda[cu13]"``) and must run without the
simulator (``NUMBA_ENABLE_CUDASIM`` unset). This is how CI proves that kernels which only ran in
the simulator also compile for real hardware (sm_80, sm_90).
"""

from __future__ import annotations

from numba import cuda, types

from sparseinfer_kernels import channels_cuda
from sparseinfer_kernels import cuda as kernels

WEIGHT_TYPES = {"float32": types.float32, "float16": types.float16, "bfloat16": types.int16}


def _a2(dtype):
    return types.Array(dtype, 2, "C")


def kernel_signatures() -> dict[str, list[tuple[str, tuple]]]:
    """kernel name -> [(label, argument types)], one entry per weight dtype where it matters."""
    f32, u32, i8, f32_1d = _a2(types.float32), _a2(types.uint32), _a2(types.int8), types.Array(types.float32, 1, "C")
    sigs: dict[str, list[tuple[str, tuple]]] = {
        "pack_x_signs": [("any", (f32, u32))],
        "predict": [("any", (u32, u32, types.int64, i8))],
        "gate_up_fused": [],
        "gate": [],
        "up": [],
        "down": [],
        "channel_keep": [("any", (f32, f32_1d, types.boolean, types.float32, types.boolean, i8))],
        "channel_linear": [],
    }
    for label, wt in WEIGHT_TYPES.items():
        w = _a2(wt)
        sigs["gate_up_fused"].append((label, (w, w, f32, types.float64, types.int64, types.boolean, i8, f32)))
        sigs["gate"].append((label, (w, f32, types.float64, types.int64, i8, f32)))
        sigs["up"].append((label, (w, f32, types.boolean, i8, f32, f32)))
        sigs["down"].append((label, (w, f32, i8, f32)))
        sigs["channel_linear"].append((label, (w, f32, i8, f32)))
    return sigs


def compile_all(cc: tuple[int, int]) -> dict[str, str]:
    """PTX of every kernel and weight dtype for compute capability `cc`: {"name/dtype": ptx}."""
    if kernels.SIM:
        raise RuntimeError("compile_ptx needs the real numba-cuda target: unset NUMBA_ENABLE_CUDASIM")
    out = {}
    funcs = {**kernels.KERNEL_FUNCS, **channels_cuda.KERNEL_FUNCS}
    for name, entries in kernel_signatures().items():
        func = funcs[name]
        for label, argtys in entries:
            ptx, _ = cuda.compile_ptx(func, argtys, cc=cc)
            out[f"{name}/{label}"] = ptx
    return out


if __name__ == "__main__":  # python -m sparseinfer_kernels.cuda_ptx
    print(f"implementation {cuda.implementation}")
    for cc in ((8, 0), (9, 0)):
        ptxs = compile_all(cc)
        print(f"sm_{cc[0]}{cc[1]}: " + ", ".join(f"{k} ({len(v)} chars)" for k, v in ptxs.items()))
