"""Find every decoder layer's gated MLP (gate, up, down, activation) in a loaded model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.activations import Activation, classify_activation

GATED_NAMES = ("gate_proj", "up_proj", "down_proj", "act_fn")


class UnsupportedModelError(UserError):
    """The model has no gated MLP, or one laid out in a way SparseInfer does not handle."""


@dataclass
class GatedMLP:
    """One decoder layer's MLP: MLP(x) = down(act(gate(x)) * up(x))."""

    index: int
    module: nn.Module
    gate: nn.Linear
    up: nn.Linear
    down: nn.Linear
    activation: Activation

    @property
    def d(self) -> int:
        return self.gate.in_features

    @property
    def k(self) -> int:
        return self.gate.out_features


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder layers (`model.model.layers` for Llama-family models)."""
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers) > 0:
        return layers
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and hasattr(mod[0], "mlp"):
            return mod
    raise UnsupportedModelError(
        f"{type(model).__name__}: found no list of decoder layers with an `mlp` "
        "(expected model.model.layers[i].mlp as in Llama-family models)"
    )


def _describe_children(mlp: nn.Module) -> str:
    kids = [f"{n}:{type(m).__name__}" for n, m in mlp.named_children()]
    return ", ".join(kids) if kids else "no submodules"


def _gated(index: int, mlp: nn.Module) -> GatedMLP:
    missing = [n for n in GATED_NAMES if not hasattr(mlp, n)]
    if missing:
        kind = "a fused gate_up_proj (unsupported layout)" if hasattr(mlp, "gate_up_proj") else "no gated MLP"
        raise UnsupportedModelError(
            f"layer {index} MLP ({type(mlp).__name__}) has {kind}: found [{_describe_children(mlp)}]; "
            "SparseInfer needs gate_proj, up_proj, down_proj and act_fn"
        )
    gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
    for name, lin in (("gate_proj", gate), ("up_proj", up), ("down_proj", down)):
        if not isinstance(lin, nn.Linear):
            raise UnsupportedModelError(
                f"layer {index} {name} is {type(lin).__name__}, not a plain Linear (quantized or fused "
                "layers are not supported; load the checkpoint in float32/float16/bfloat16)"
            )
        if lin.bias is not None:
            raise UnsupportedModelError(f"layer {index} {name} has a bias; SparseInfer's MLP has none")
    d, k = gate.in_features, gate.out_features
    if (up.in_features, up.out_features) != (d, k) or (down.in_features, down.out_features) != (k, d):
        raise UnsupportedModelError(
            f"layer {index}: projection shapes do not form a gated MLP "
            f"(gate {d}->{k}, up {up.in_features}->{up.out_features}, "
            f"down {down.in_features}->{down.out_features})"
        )
    return GatedMLP(index, mlp, gate, up, down, classify_activation(mlp.act_fn))


def discover_mlps(model: nn.Module) -> list[GatedMLP]:
    """Every decoder layer's gated MLP, in order; a clear error naming what was found otherwise."""
    layers = decoder_layers(model)
    mlps = []
    for i, layer in enumerate(layers):
        mlp = getattr(layer, "mlp", None)
        if mlp is None:
            raise UnsupportedModelError(
                f"decoder layer {i} ({type(layer).__name__}) has no `mlp`: found [{_describe_children(layer)}]"
            )
        mlps.append(_gated(i, mlp))
    return mlps
