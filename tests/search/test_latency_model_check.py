"""`bench latency-model`: held-out profiles on the study's grid, the check's table and JSON, the cache."""

from __future__ import annotations

import json

from sparseinfer_dse.search.latency_model_check import heldout_profiles


def test_heldout_profiles_are_random_per_layer_on_the_grid_and_seeded():
    a = heldout_profiles(6, 5, 0.2, 0.8, 0.05, "wisparse", seed=3)
    assert list(a) == [f"heldout-{i}" for i in range(6)]
    for p in a.values():
        assert p.method == "wisparse" and p.num_layers == 5
        assert all(0.2 - 1e-9 <= x <= 0.8 + 1e-9 and abs((x - 0.2) / 0.05 - round((x - 0.2) / 0.05)) < 1e-6
                   for x in p.levels)
    assert len({p.levels for p in a.values()}) == 6  # not uniform, not repeated
    assert heldout_profiles(6, 5, 0.2, 0.8, 0.05, "wisparse", seed=3) == a
    assert heldout_profiles(6, 5, 0.2, 0.8, 0.05, "wisparse", seed=4) != a


def test_bench_latency_model_on_the_demo(tmp_path, monkeypatch, invoke):
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    study = tmp_path / "s.toml"
    study.write_text('[search]\nmodel = "demo"\nalpha_range = "0.9:1.1"\nalpha_step = 0.05\nlatency_tokens = 3\n'
                     'latency_prompts = 1\nlatency_repeats = 2\nbackend = "numba-cpu"\ndevice = "cpu"\n')
    out = tmp_path / "lm.json"
    args = ("bench", "latency-model", "--study", study, "--heldout", 3, "--grid-points", 3, "--json", out)
    res = invoke(*args)
    assert "median |error|" in res.output and "heldout-2" in res.output
    data = json.loads(out.read_text())
    assert data["method"] == "sparseinfer" and data["grid"] == [0.9, 1.0, 1.1] and len(data["heldout"]) == 3
    for row in data["heldout"]:
        assert row["ratio_ci_low"] <= row["measured_ratio"] <= row["ratio_ci_high"]
        assert abs(row["error"] - (row["predicted_ratio"] / row["measured_ratio"] - 1)) < 1e-12
    assert data["median_abs_error"] <= data["max_abs_error"] and "--heldout 3" in data["command"]
    cached = list((tmp_path / "cache" / "latency_models").glob("sparseinfer-*.json"))
    assert len(cached) == 1
    again = invoke(*args)
    assert "from the cache" in again.output
    assert json.loads(out.read_text())["latency_model"] == data["latency_model"]
