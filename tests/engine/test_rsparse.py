"""R-Sparse in the engine: ranks in profiles, the SVD factors, and the decode step against its
definition (y = W (x * m) + U_r S_r V_r^T (x * (1 - m)) per projection) on a tiny SiLU Llama."""

import json

import pytest
import torch

from sparseinfer_dse.engine import sparsify
from sparseinfer_dse.engine import lowrank as lowrank_mod
from sparseinfer_dse.engine.lowrank import compute_factors, svd_factors
from sparseinfer_dse.engine.methods import ProfileError
from sparseinfer_dse.engine.profile import Profile, levels_repr
from sparseinfer_dse.engine.thresholds import _LayerMath, build_table, capture_mlp_inputs
from sparseinfer_dse.eval import lowrank_cache
from sparseinfer_dse.models.loading import ModelSpec, load_model

from decode_helpers import decode_logits, decode_logits_with


@pytest.fixture(scope="module")
def silu(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-silu"))))
    g = torch.Generator().manual_seed(0)
    xs = capture_mlp_inputs(lm.model, lm.mlps, [torch.randint(4, 100, (1, 24), generator=g) for _ in range(6)],
                            max_tokens=128)
    return lm, build_table("rsparse", lm.mlps, xs, {"text": "random", "tokens": 128, "key": "rsparse"})


def test_profile_ranks_round_trip_and_errors(tmp_path):
    p = Profile((0.5, None, 0.7), methods="rsparse", ranks=(16, None, 0))
    assert p.rank_of(0) == 16 and p.rank_of(1) == 0 and p.rank_of(2) == 0
    assert levels_repr(p) == "rsparse sparsity: 50%/r16 dense 70%"
    back = Profile.load(p.save(tmp_path / "p.json"))
    assert back.ranks == (16, 0, 0) and back.levels == p.levels
    assert [r["rank"] for r in json.loads((tmp_path / "p.json").read_text())["layers"]] == [16, 0, 0]
    assert Profile((0.5,), methods="rsparse", ranks=(0,)).ranks is None  # rank 0 everywhere: no remainder
    assert Profile.uniform(4, 0.5, method="rsparse", rank=32).ranks == (32,) * 4
    for kwargs, match in ((dict(methods="teal", ranks=(8,)), "teal takes no rank"),
                          (dict(methods="rsparse", ranks=(-1,)), "whole number >= 0"),
                          (dict(methods="rsparse", ranks=(2.5,)), "whole number >= 0"),
                          (dict(methods="rsparse", ranks=(1, 2)), "ranks for 2 layers")):
        with pytest.raises(ProfileError, match=match):
            Profile((0.5,), **kwargs)


def test_svd_factors_are_the_best_approximation_exact_and_randomized(monkeypatch):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(40, 12, generator=g) @ torch.diag(torch.logspace(0, -2, 12)) @ torch.randn(12, 30, generator=g)
    a, u = svd_factors(w, 5)
    assert a.shape == (5, 30) and u.shape == (40, 5) and a.dtype == torch.float32
    S = torch.linalg.svdvals(w.double())
    err = torch.linalg.matrix_norm((w - u @ a).double())
    torch.testing.assert_close(err, S[5:].norm(), rtol=1e-4, atol=1e-6)  # Eckart-Young: the optimum
    a_full, u_full = svd_factors(w, 100)  # capped at the smaller side: exact reconstruction
    assert a_full.shape == (30, 30)
    torch.testing.assert_close(u_full @ a_full, w, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(lowrank_mod, "EXACT_UP_TO", 4)  # the randomized path of large weights
    ar, ur = svd_factors(w, 5)
    assert float(torch.linalg.matrix_norm((w - ur @ ar).double())) < float(err) * 1.01


@pytest.mark.parametrize("backend", ["torch", "numba-cpu"])
def test_decode_step_equals_the_definition(silu, backend):
    lm, table = silu
    ids = torch.randint(4, 100, (2, 9), generator=torch.Generator().manual_seed(3))
    prof = Profile((0.5, 0.6, None), lm.identity, methods="rsparse", ranks=(8, 0, None))
    factors = compute_factors(lm.mlps, 16)
    with sparsify(lm, prof, backend, method="rsparse", tables=[table], factors=factors) as h:
        h.configure(collect=True)
        got = decode_logits(lm, ids)
        resolved = h.profile
        assert h.layers[0].rank == 8 and h.layers[1].rank == 0 and h.layers[2].alpha is None
        stats = h.layer_stats()
        h.set_profile(Profile((0.5, 0.6, None), lm.identity, methods="rsparse"))  # rank 0: no remainder
        without = decode_logits(lm, ids)
    math = {}
    for i, mlp in enumerate(lm.mlps):
        thr = resolved.thresholds[i]
        if thr is None:
            continue
        layer, f = _LayerMath(mlp, "rsparse"), factors.at(i, resolved.rank_of(i))

        def product(v, w, p, layer=layer, thr=thr, f=f):
            keep = (v.abs() * layer.scale[p]) > thr[p]
            y = (v * keep) @ w.t()
            a, u = f[p]
            return y + ((v * ~keep) @ a.t()) @ u.t() if a.shape[0] else y

        math[i] = lambda v, layer=layer, product=product: product(
            layer.act(product(v, layer.wg, "gate")) * product(v, layer.wu, "up"), layer.wd, "down")
    want = decode_logits_with(lm, ids, math)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=2e-4)
    assert not torch.allclose(got, without, atol=1e-4)  # the remainder is really added
    assert 0.2 < stats[0]["skipped"] < 0.9 and stats[2]["calls"]["decode_dense"] == 1


def test_full_rank_remainder_gives_back_the_dense_model(silu):
    """At rank min(d, k) the remainder is W itself on the skipped channels: any sparsity is exact."""
    lm, table = silu
    ids = torch.randint(4, 100, (1, 8), generator=torch.Generator().manual_seed(5))
    dense = decode_logits(lm, ids)
    full = min(lm.mlps[0].d, lm.mlps[0].k)
    n = len(lm.mlps)
    with sparsify(lm, Profile.uniform(n, 0.9, method="rsparse", rank=full), "numba-cpu", method="rsparse",
                  tables=[table]) as h:  # no factors given: each layer computes its own SVD
        torch.testing.assert_close(decode_logits(lm, ids), dense, atol=2e-3, rtol=2e-3)
        h.set_profile(Profile.uniform(n, 0.9, method="rsparse"))
        assert not torch.allclose(decode_logits(lm, ids), dense, atol=2e-3)
        with pytest.raises(ValueError, match="above the projections' smaller side"):
            h.set_profile(Profile.uniform(n, 0.5, method="rsparse", rank=full + 1))


def test_factors_are_cached_by_weights_and_rank(silu, tmp_path, monkeypatch):
    lm, _ = silu
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path))
    said = []
    first = lowrank_cache.lowrank_factors(lm, 8, progress=False, say=said.append)
    assert len(said) == 1 and "cached in" in said[0] and len(list((tmp_path / "lowrank").glob("*.pt"))) == 1
    again = lowrank_cache.lowrank_factors(lm, 8, progress=False, say=said.append)
    assert len(said) == 1  # from the cache
    for p in ("gate", "up", "down"):
        assert torch.equal(first.at(2, 8)[p][0], again.at(2, 8)[p][0])
    lowrank_cache.lowrank_factors(lm, 4, progress=False, say=said.append)  # another rank: another entry
    assert len(said) == 2 and len(list((tmp_path / "lowrank").glob("*.pt"))) == 2
    with pytest.raises(ValueError, match="above the 8"):
        first.at(0, 9)
