"""Per-layer decode sparsity: the counts, their fractions, and the hooks on a plain model."""

from __future__ import annotations

import pytest
import torch

from sparseinfer_dse.engine.layer_stats import LayerCounts, continuation_sparsity, decode_sparsity
from sparseinfer_dse.models.discovery import discover_mlps
from sparseinfer_dse.models.synthetic import build_synthetic

SMALL = dict(d=256, k=688, heads=8)  # the 7B ratio k/d = 2.69, 32-wide heads


@pytest.fixture(scope="module")
def small():
    return build_synthetic("synthetic-7b", layers=2, **SMALL)


def test_fractions_of_counts():
    c = LayerCounts(4)
    zero = torch.tensor([[True, True, False, False], [True, False, False, False]])
    pred = torch.tensor([[True, False, True, False], [True, False, False, False]])
    c.observe(zero, pred)
    f = c.fractions()
    assert f["tokens"] == 2 and f["relu_sparsity"] == 3 / 8 and f["predicted_sparsity"] == 3 / 8
    assert f["precision"] == 2 / 3 and f["recall"] == 2 / 3
    assert f["as_gained"] == 1 / 8 and f["skipped"] == 4 / 8
    empty = LayerCounts(4)
    empty.observe(torch.zeros((1, 4), dtype=torch.bool), torch.zeros((1, 4), dtype=torch.bool))
    assert empty.fractions()["precision"] is None and empty.fractions()["recall"] is None
    before = c.copy()
    c.observe(zero, pred)
    assert c.minus(before).fractions() == f


def test_decode_sparsity_in_range(small):
    model, tok = small
    rows = decode_sparsity(model, tok, tokens=6)
    assert len(rows) == 2
    for r in rows:
        assert r["tokens"] == 2 * 6  # two built-in prompts, six decode steps each
        assert 0.80 <= r["relu_sparsity"] <= 0.95, r
        # the sign predictor sees most of it at alpha 1.00 and rarely skips a row that is not zero
        assert 0.75 <= r["predicted_sparsity"] <= r["relu_sparsity"] + 0.02, r
        assert r["precision"] > 0.97, r


def test_continuation_sparsity_counts_the_decode_positions_of_a_full_pass(small):
    """Zeros at positions P .. P+G-2 of one teacher-forced forward over prompt + continuation."""
    model, tok = small
    g = torch.Generator().manual_seed(0)
    samples = [(torch.randint(3, 259, (n,), generator=g).tolist(), torch.randint(3, 259, (m,), generator=g).tolist())
               for n, m in ((7, 5), (4, 9), (5, 1))]  # the last has no decode position
    mlps = discover_mlps(model)
    zeros, total = [0] * len(mlps), [0] * len(mlps)
    sel = {}

    def hook(i):
        def fn(mod, args):
            x = args[0][0, sel["lo"]: sel["hi"]]
            h = mlps[i].module.act_fn(mlps[i].gate(x))
            zeros[i] += int((h == 0).sum())
            total[i] += h.numel()
        return fn

    handles = [m.module.register_forward_pre_hook(hook(i)) for i, m in enumerate(mlps)]
    with torch.no_grad():
        for p, c in samples[:2]:
            sel["lo"], sel["hi"] = len(p), len(p) + len(c) - 1
            model(input_ids=torch.tensor([p + c]), use_cache=False)
    for h in handles:
        h.remove()
    rows = continuation_sparsity(model, samples)
    for r, z, t in zip(rows, zeros, total):
        assert r["tokens"] == (5 - 1) + (9 - 1) and r["tokens"] * 688 == t
        assert r["relu_sparsity"] == pytest.approx(z / t, abs=2e-3)
        assert "precision" in r and r["predicted_sparsity"] == 0.0  # no alpha: no prediction
