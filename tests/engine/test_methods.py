"""CATS, TEAL and WiSparse in the engine, on a tiny SiLU Llama: calibrated thresholds really give
their target sparsity, the decode step equals the masked reference math, the backends agree, dense
layers are exact, and the channel layouts share storage with the model's weights."""

import numpy as np
import pytest
import torch

from sparseinfer_dse.engine import sparsify
from sparseinfer_dse.engine.methods import ProfileError
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.engine.thresholds import GRID, _LayerMath, build_table, capture_mlp_inputs
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.loading import ModelSpec, load_model

from decode_helpers import decode_logits, decode_logits_with

METHODS = ["cats", "teal", "wisparse", "rsparse"]


@pytest.fixture(scope="module")
def silu(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-silu"))))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(4, 100, (1, 24), generator=g) for _ in range(6)]
    xs = capture_mlp_inputs(lm.model, lm.mlps, batches, max_tokens=128)
    tables = {m: build_table(m, lm.mlps, xs, {"text": "random", "tokens": 128, "key": m}) for m in METHODS}
    return lm, xs, tables


@pytest.mark.parametrize("method", METHODS)
def test_thresholds_zero_their_target_fraction(silu, method):
    lm, xs, tables = silu
    table = tables[method]
    assert table.quantiles.shape == (len(lm.mlps), len(table.projections), len(GRID))
    assert np.all(np.diff(table.quantiles, axis=-1) >= 0)  # quantiles rise with the target
    for i, (mlp, x) in enumerate(zip(lm.mlps, xs)):
        scores = _LayerMath(mlp, method).scores(x, method)
        for level in (0.3, 0.7):
            thr, lv = table.thresholds(i, level), table.projection_levels(i, level)
            for p in table.projections:
                zeroed = float((scores[p] <= thr[p]).float().mean())
                assert abs(zeroed - lv[p]) < 0.03, (p, level, zeroed)
            if method == "wisparse":  # the split keeps the layer's mean at its target
                assert abs(np.mean(list(lv.values())) - level) < 1e-6
            else:
                assert all(v == level for v in lv.values())


def test_wisparse_split_is_no_worse_than_uniform_on_calibration(silu):
    lm, xs, tables = silu
    table = tables["wisparse"]
    for i, (mlp, x) in enumerate(zip(lm.mlps, xs)):
        layer = _LayerMath(mlp, "wisparse")
        y = layer.output(x[:64])
        split = layer.output(x[:64], table.thresholds(i, 0.5))
        q = {p: table.quantiles[i, j] for j, p in enumerate(table.projections)}
        uniform = layer.output(x[:64], {p: float(np.interp(0.5, GRID, q[p])) for p in q})
        assert float(((split - y) ** 2).sum()) <= float(((uniform - y) ** 2).sum()) * 1.05


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("backend", ["torch", "numba-cpu"])
def test_decode_step_equals_masked_reference(silu, method, backend):
    lm, _, tables = silu
    n = len(lm.mlps)
    ids = torch.randint(4, 100, (2, 9), generator=torch.Generator().manual_seed(3))
    dense = decode_logits(lm, ids)
    assert n == 3
    prof = Profile((0.5, None, 0.7), lm.identity, methods=method)
    with sparsify(lm, prof, backend, method=method, tables=[tables[method]]) as h:
        h.configure(collect=True)
        got = decode_logits(lm, ids)
        stats = h.layer_stats()
        resolved = h.profile
    # the same decode step in plain float32 torch with the same thresholds
    math = {}
    for i, mlp in enumerate(lm.mlps):
        thr = resolved.thresholds[i]
        if thr is None:
            continue
        layer = _LayerMath(mlp, method)
        if method == "cats":
            def cats(v, layer=layer, thr=thr):
                a = layer.act(v @ layer.wg.t())
                return ((a * (a.abs() > thr["act"])) * (v @ layer.wu.t())) @ layer.wd.t()
            math[i] = cats
        else:
            math[i] = lambda v, layer=layer, thr=thr: layer.output(v, thr)
    want = decode_logits_with(lm, ids, math)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=2e-4)
    assert not torch.allclose(got, dense, atol=1e-3)  # it really is sparse
    assert stats[1]["calls"]["decode_dense"] == 1 and stats[0]["calls"]["decode_sparse"] == 1
    assert 0.2 < stats[0]["skipped"] < 0.9


def test_dense_profile_is_exact_and_layouts_are_views(silu):
    lm, _, tables = silu
    ids = torch.randint(4, 100, (1, 8), generator=torch.Generator().manual_seed(5))
    dense = decode_logits(lm, ids)
    n = len(lm.mlps)
    with sparsify(lm, Profile.uniform(n, 0.5, method="teal"), "numba-cpu", method="teal", tables=[tables["teal"]]) as h:
        w_t = h.layers[0]._channels["prep"]["gate"].state["w_t"]
        assert lm.mlps[0].gate.weight.data_ptr() != w_t.data_ptr()  # default: a copy beside the weights
        assert h.extra_bytes >= 3 * n * lm.mlps[0].d * lm.mlps[0].k * 4
        h.set_profile(Profile.dense(n, method="teal"))
        torch.testing.assert_close(decode_logits(lm, ids), dense, atol=1e-5, rtol=1e-5)
    shared = load_model(ModelSpec(str(lm.spec.model)))
    with sparsify(shared, Profile.uniform(n, 0.5, method="teal"), "numba-cpu", method="teal", tables=[tables["teal"]],
                  share_weights=True) as h:
        w_t = h.layers[0]._channels["prep"]["gate"].state["w_t"]
        assert shared.mlps[0].gate.weight.data_ptr() == w_t.data_ptr()  # the model reads the kernel's layout
        assert h.extra_bytes < n * lm.mlps[0].d * lm.mlps[0].k  # column norms only
        h.set_profile(Profile.dense(n, method="teal"))
        torch.testing.assert_close(decode_logits(shared, ids), dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decode_logits(shared, ids), dense, atol=1e-5, rtol=1e-5)


def test_missing_thresholds_and_wrong_method_are_one_line_errors(silu):
    lm, _, tables = silu
    n = len(lm.mlps)
    with pytest.raises(ProfileError, match="no wisparse calibration is loaded"):
        sparsify(lm, Profile.uniform(n, 0.5, method="wisparse"), "torch", method="wisparse")
    with pytest.raises(UserError, match="--decode-activation relu"):
        sparsify(lm, None, "torch")  # sparseinfer on a SiLU model without the opt-in
    with sparsify(lm, None, "torch", method="cats", tables=[tables["cats"]]) as h:
        assert all(layer.alpha is None for layer in h.layers)  # default: dense for the calibrated methods
        with pytest.raises(UserError, match="--decode-activation relu"):
            h.set_profile(Profile.uniform(n, 1.0))
        resolved = h.resolve(Profile.uniform(n, 0.5, method="cats"))
        assert resolved.calibration["key"] == "cats" and all(t is not None for t in resolved.thresholds)
        h.set_profile(resolved)  # a profile's own thresholds apply without a table
        assert h.profile.thresholds == resolved.thresholds
