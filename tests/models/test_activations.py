import pytest
import torch
from torch import nn
from transformers.activations import ACT2FN

from sparseinfer_dse.models.activations import FATReLU, classify_activation
from sparseinfer_dse.models.applicability import applicability, require_applicable
from sparseinfer_dse.errors import UserError


@pytest.mark.parametrize("name,kind", [("relu", "relu"), ("silu", "silu"), ("swish", "silu"), ("gelu", "gelu"),
                                       ("gelu_pytorch_tanh", "gelu"), ("gelu_new", "gelu"), ("tanh", "other")])
def test_classify_transformers_activations(name, kind):
    assert classify_activation(ACT2FN[name]).kind == kind


def test_fatrelu_threshold_and_negative_zero():
    act = FATReLU(0.01)
    a = classify_activation(act)
    assert (a.kind, a.threshold) == ("fatrelu", 0.01)
    out = act(torch.tensor([-0.0, 0.0099, 0.01, -3.0]))
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.01, 0.0])
    assert out[2] > 0 and out[1] == 0
    assert classify_activation(FATReLU(0.0)).kind == "relu"
    assert classify_activation(nn.ReLU()).is_sparse


def test_silu_needs_explicit_opt_in():
    silu = classify_activation(ACT2FN["silu"])
    ok, why = applicability(silu, None)
    assert not ok and "--decode-activation relu" in why
    with pytest.raises(UserError, match="does not apply"):
        require_applicable(silu, None)
    assert "CHANGES the model" in require_applicable(silu, "relu")
    assert applicability(classify_activation(ACT2FN["tanh"]), "relu")[0] is False
