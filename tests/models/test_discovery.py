import pytest

from sparseinfer_dse.models.discovery import UnsupportedModelError
from sparseinfer_dse.models.loading import ModelSpec, load_model


def test_gpt2_has_no_gated_mlp(tiny_model):
    with pytest.raises(UnsupportedModelError, match=r"no gated MLP: found \[c_fc:.*c_proj"):
        load_model(ModelSpec(str(tiny_model("gpt2"))), weights=False)


def test_phi3_fused_gate_up_is_named(tiny_model):
    with pytest.raises(UnsupportedModelError, match="fused gate_up_proj"):
        load_model(ModelSpec(str(tiny_model("phi3"))), weights=False)


def test_discovers_every_layer_in_order(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("qwen2"))))
    assert [m.index for m in lm.mlps] == [0, 1, 2]
    layers = lm.model.model.layers
    assert all(m.module is layers[i].mlp for i, m in enumerate(lm.mlps))
