"""The calibrated latency model: prediction from per-layer levels, its fit on a real (small) model."""

from __future__ import annotations

import pytest

from sparseinfer_dse.engine.decode import prepare_workload
from sparseinfer_dse.engine.latency_model import LatencyModel, build_latency_model
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.synthetic import build_synthetic


def _model() -> LatencyModel:
    return LatencyModel(method="sparseinfer", grid=(0.9, 1.0, 1.1), layer_ms=((1.0, 2.0, 4.0), (0.5, 0.5, 1.5)),
                        dense_layer_ms=(5.0, 3.0), rest_ms=10.0, dense_step_ms=20.0)


def test_prediction_interpolates_per_layer_and_clamps():
    m = _model()
    assert m.predict_ms(Profile((0.95, 1.1))) == pytest.approx(10.0 + 1.5 + 1.5)
    assert m.predict_ms(Profile((0.5, 2.0))) == pytest.approx(10.0 + 1.0 + 1.5)  # clamped at the grid's ends
    assert m.predict_ms(Profile((None, 1.05))) == pytest.approx(10.0 + 5.0 + 1.0)  # a dense layer
    assert m.predict_ratio(Profile((1.0, 1.0))) == pytest.approx(12.5 / 20.0)
    assert LatencyModel.from_dict(m.to_dict()) == m
    with pytest.raises(UserError, match="3 layers"):
        m.predict_ms(Profile((1.0, 1.0, 1.0)))
    with pytest.raises(UserError, match="covers sparseinfer"):
        m.predict_ms(Profile((0.5, 0.5), methods="teal"))


def test_build_on_a_small_model_fits_the_uniform_profiles():
    model, tok = build_synthetic("synthetic-7b", layers=2, d=128, k=344, heads=4)
    h = sparsify(model, None, backend="numba-cpu")
    try:
        wl = prepare_workload(model, tok, gsm8k_prompts(2), 4, h)
        calls = []
        m = build_latency_model(h, wl, [1.1, 0.9, 1.0], method="sparseinfer", repeats=2, tokens=3,
                                progress=calls.append)
        assert m.grid == (0.9, 1.0, 1.1) and m.num_layers == 2 and len(m.dense_layer_ms) == 2
        assert all(t > 0 for row in m.layer_ms for t in row) and m.dense_step_ms > 0
        assert m.rest_spread_ms[0] <= m.rest_ms <= m.rest_spread_ms[1]
        ratios = m.info["uniform_ratios"]
        # rest_ms is the median of the uniform profiles' fits: the middle one is predicted exactly
        errs = sorted(abs(m.predict_ratio(Profile.uniform(2, a)) - ratios[f"uniform-{a:g}"]) for a in m.grid)
        assert errs[0] == pytest.approx(0.0, abs=1e-9)
        assert sum(calls) == 2 * 4 + 4 * (1 + 2 * 2)  # per-layer rounds, then the step runs
        assert h.options.enabled and h.profile is not None  # options and profile restored
    finally:
        h.undo()


def test_ranked_prediction_adds_each_layers_remainder():
    m = LatencyModel(method="rsparse", grid=(0.2, 0.8), layer_ms=((2.0, 1.0), (4.0, 2.0)), dense_layer_ms=(3.0, 5.0),
                     rest_ms=10.0, dense_step_ms=20.0, ranks=(0, 8, 16), rank_ms=((0.0, 0.4, 1.0), (0.0, 0.2, 0.2)))
    plain = Profile((0.5, 0.8), methods="rsparse")
    assert m.predict_ms(plain) == pytest.approx(10.0 + 1.5 + 2.0)
    assert m.predict_ms(Profile((0.5, 0.8), methods="rsparse", ranks=(12, 4))) == pytest.approx(13.5 + 0.7 + 0.1)
    assert m.predict_ms(Profile((None, 0.8), methods="rsparse", ranks=(16, 16))) == pytest.approx(10.0 + 3.0 + 2.2)
    assert LatencyModel.from_dict(m.to_dict()) == m
    with pytest.raises(UserError, match="covers wisparse without ranks"):
        LatencyModel(method="wisparse", grid=(0.2, 0.8), layer_ms=((1.0, 1.0),), dense_layer_ms=(1.0,), rest_ms=0.0,
                     dense_step_ms=1.0).predict_ms(Profile((0.5,), methods="rsparse", ranks=(8,)))
