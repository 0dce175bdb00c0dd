"""The figures `inspect` reports: sizes, activation, bytes read per decoded token, extra memory."""

from __future__ import annotations

from typing import Any

from sparseinfer_dse.models.applicability import applicability
from sparseinfer_dse.models.loading import LoadedModel


def sign_bytes(d: int, k: int) -> int:
    """Packed sign bits of W_gate: k rows of ceil(d/32) uint32 words."""
    return k * ((d + 31) // 32) * 4


def summarize(lm: LoadedModel) -> dict[str, Any]:
    mlps = lm.mlps
    d, k = mlps[0].d, mlps[0].k
    act = lm.activation
    dtype = lm.dtype
    elem = dtype.itemsize
    n = len(mlps)
    uniform = all((m.d, m.k, m.activation) == (d, k, act) for m in mlps)
    params = sum(p.numel() for p in lm.model.parameters())
    applies, reason = applicability(act, lm.spec.decode_activation)
    arch = (getattr(lm.config, "architectures", None) or [type(lm.model).__name__])[0]
    out: dict[str, Any] = {
        "model": lm.spec.model,
        "source": lm.source.kind,
        "path": lm.source.path if not lm.source.gguf_file else f"{lm.source.path}/{lm.source.gguf_file}",
        "architecture": arch,
        "model_type": getattr(lm.config, "sparseinfer_source_model_type", None) or lm.config.model_type,
        "num_layers": n,
        "d": d,
        "k": k,
        "activation": act.kind,
        "activation_threshold": act.threshold if act.kind == "fatrelu" else None,
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": params,
        "uniform_layers": uniform,
        "mlp_bytes_per_token_dense": sum(3 * m.d * m.k for m in mlps) * elem,
        "sign_bytes": sum(sign_bytes(m.d, m.k) for m in mlps),
        "down_transposed_bytes": sum(m.d * m.k for m in mlps) * elem,
        "sparseinfer_applies": applies,
        "reason": reason,
        "decode_activation": lm.spec.decode_activation,
        "config_hash": lm.identity.config_hash,
    }
    if lm.source.gguf_file:
        out["note"] = "GGUF weights are dequantized by transformers on load"
    return out


def _mib(b: int) -> str:
    return f"{b / 2**20:,.1f} MiB"


def format_summary(s: dict[str, Any]) -> str:
    act = s["activation"] + (f" (T={s['activation_threshold']:g})" if s["activation_threshold"] is not None else "")
    rows = [
        ("model", s["model"]),
        ("loaded from", f"{s['source']}: {s['path']}"),
        ("architecture", f"{s['architecture']} ({s['model_type']})"),
        ("decoder layers", s["num_layers"]),
        ("hidden size d", s["d"]),
        ("intermediate size k", s["k"]),
        ("activation", act),
        ("dtype", s["dtype"]),
        ("parameters", f"{s['parameters']:,}"),
        ("dense MLP bytes / token", _mib(s["mlp_bytes_per_token_dense"])),
        ("sign bits (SparseInfer)", f"{_mib(s['sign_bytes'])} (1/{16 if s['dtype'] != 'float32' else 32} of W_gate)"),
        ("W_down^T copy", _mib(s["down_transposed_bytes"])),
        ("SparseInfer applies", "yes" if s["sparseinfer_applies"] else "no"),
        ("why", s["reason"]),
    ]
    if s.get("note"):
        rows.append(("note", s["note"]))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
