"""Whether SparseInfer can run on a model, and the explicit opt-in for SiLU/GELU models."""

from __future__ import annotations

from typing import Optional

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.activations import Activation

RELU_AT_DECODE_WARNING = (
    "decode-time ReLU is ON: the {act} MLP activation is replaced by ReLU in decode steps. "
    "This CHANGES the model (it was not trained with ReLU); accuracy figures are of the changed model."
)


def applicability(activation: Activation, decode_activation: Optional[str]) -> tuple[bool, str]:
    """(applies, reason) for running SparseInfer with this activation and opt-in."""
    if activation.is_sparse:
        return True, f"{activation.describe()} gives exact zeros, which SparseInfer predicts and skips"
    if activation.kind in ("silu", "gelu"):
        if decode_activation == "relu":
            return True, RELU_AT_DECODE_WARNING.format(act=activation.kind)
        return False, (
            f"{activation.kind} has no exact zeros; pass --decode-activation relu to apply ReLU at decode "
            "time (changes the model: without ReLUfication fine-tuning accuracy drops sharply)"
        )
    return False, f"activation {activation.describe()} is not supported (relu, fatrelu, or silu/gelu with opt-in)"


def require_applicable(activation: Activation, decode_activation: Optional[str]) -> str:
    """Raise a one-line UserError when SparseInfer cannot run; return the reason/notice otherwise."""
    ok, reason = applicability(activation, decode_activation)
    if not ok:
        raise UserError(f"SparseInfer does not apply: {reason}")
    return reason
