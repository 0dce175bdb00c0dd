"""The compiled decode step: a static cache loaded from the prefill, the sparse MLP as one custom op
that reads the layer's level at run time (no recompilation when the profile or variant changes; the
dense reference is a second graph with the original MLPs compiled in)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from sparseinfer_dse.engine.compiled_decode import CompiledDecoder
from sparseinfer_dse.engine.decode import prefill, step
from sparseinfer_dse.engine.latency import measure_decode_latency
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.models.synthetic import build_synthetic


@pytest.fixture(scope="module")
def small():
    return build_synthetic("synthetic-7b", layers=2, d=128, k=344, heads=4)


def _eager(model, ids, tokens):
    with torch.inference_mode():
        _, cache = prefill(model, ids)
        out = []
        for t in tokens:
            logits, cache = step(model, t.view(1, 1), cache)
            out.append(logits.float())
    return out


def _compiled(decoder, model, ids, tokens):
    with torch.inference_mode():
        _, cache = prefill(model, ids)
        decoder.load(cache)
        return [decoder.step(t.view(1, 1)).float() for t in tokens]


def test_op_runs_the_layer_and_compiled_step_matches_eager_without_recompiling(small):
    model, tok = small
    ids = tok("Question: 2 + 3?\nAnswer:", return_tensors="pt").input_ids
    tokens = torch.tensor([5, 17, 9, 60])
    h = sparsify(model, Profile.uniform(2, 1.0), backend="numba-cpu")
    try:
        x = torch.randn(1, 1, 128)
        layer = h.layers[0]
        with torch.inference_mode():
            assert torch.equal(torch.ops.sparseinfer_dse.mlp_step(x, layer.slot), layer(x))
        counter = CompileCounter()
        decoder = CompiledDecoder(model, ids.shape[1] + len(tokens), backend=counter)
        runs = {}
        for name, alpha, enabled in (("sparse", 1.0, True), ("dense", 1.0, False), ("sparse-0.5", 0.5, True)):
            h.set_profile(Profile.uniform(2, alpha))
            h.configure(enabled=enabled)
            want = _eager(model, ids, tokens)
            got = _compiled(decoder, model, ids, tokens)
            for w, g in zip(want, got):
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
            runs[name] = got
        # the level is read inside the op at run time; dense (enabled=False) is its own, fully compiled graph
        assert counter.frame_count == 2
        assert not torch.allclose(runs["sparse"][-1], runs["dense"][-1])  # the op really switched
        assert not torch.allclose(runs["sparse"][-1], runs["sparse-0.5"][-1])
        with pytest.raises(ValueError, match="static cache holds"):
            decoder.step(tokens[:1].view(1, 1))
    finally:
        h.undo()


def test_inductor_compiled_dense_step_matches_eager(small):
    model, tok = small
    ids = tok("Question: 7 * 6?\nAnswer:", return_tensors="pt").input_ids
    tokens = torch.tensor([3, 44, 12])
    h = sparsify(model, Profile.uniform(2, 1.0), backend="numba-cpu")
    try:
        decoder = CompiledDecoder(model, ids.shape[1] + len(tokens))
        for enabled in (False, True):
            h.configure(enabled=enabled)
            for w, g in zip(_eager(model, ids, tokens), _compiled(decoder, model, ids, tokens)):
                torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-3)
    finally:
        h.undo()


def test_latency_measured_on_the_compiled_step(small):
    model, tok = small
    h = sparsify(model, Profile.uniform(2, 1.0), backend="numba-cpu")
    try:
        res = measure_decode_latency(h, tok, gsm8k_prompts(2), tokens=3, repeats=1, variants=["kf+as", "plain"],
                                     compile=True, mlp_share=False, collect_sparsity=False)
        assert res["compiled"] is True and res["dense"]["top1_agreement"] == 1.0
        assert res["dense_ms_per_token"] > 0 and res["sparse_ms_per_token"] > 0 and len(res["run_ratios"]) == 2
    finally:
        h.undo()
