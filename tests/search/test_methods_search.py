"""`search --method` on a SiLU model: calibrated once, seeds are dense and uniform 30/50/70%, the
levels are per-layer sparsities, exported profiles carry their thresholds and apply in `eval`."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from sparseinfer_dse.engine.latency_model import LatencyModel
from sparseinfer_dse.engine.profile import Profile


@pytest.fixture
def cal(tmp_path):
    path = tmp_path / "cal.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"Q: {i} + {i} =", "continuation": f" {2 * i} and some more"})
                              for i in range(4)))
    return path


def test_wisparse_search_end_to_end(invoke, tiny_model, tmp_path, cal, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    invoke("search", "--model", tiny_model("llama-silu"), "--method", "wisparse", "--out", out, "--calibration", cal,
           "--calibration-samples", 4, "--latency-tokens", 2, "--latency-prompts", 1, "--latency-repeats", 1,
           "--sparsity-range", "0.2:0.8", "--sparsity-step", "0.1", "--backend", "numba-cpu", "--no-report",
           "--no-verify", "--budget", 6)
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.seed[:4]) == ["dense", "uniform-30%", "uniform-50%", "uniform-70%"]
    assert [c for c in trials.columns if c.startswith("sparsity_")] == ["sparsity_000", "sparsity_001", "sparsity_002"]
    assert trials.loc[2, ["sparsity_000", "sparsity_001", "sparsity_002"]].tolist() == [0.5, 0.5, 0.5]
    assert trials.proxy_kl[0] == pytest.approx(0.0, abs=1e-6) and trials.proxy_kl[3] > trials.proxy_kl[1] > 0
    meta = json.loads((out / "study.json").read_text())
    assert meta["method"] == "wisparse" and meta["thresholds"].startswith("wisparse-")
    assert len(list((tmp_path / "cache" / "thresholds").glob("wisparse-*.npz"))) == 1
    for p in (out / "profiles").glob("*.json"):
        prof = Profile.load(p)
        assert prof.method == "wisparse" and prof.knob == "sparsity"
        assert all(t is not None for t, a in zip(prof.thresholds or [None] * 3, prof.levels) if a is not None) or \
            all(a is None for a in prof.levels)
    invoke("verify", "--study", out, "--repeats", 2, "--no-report")
    verified = pd.read_csv(out / "verified.csv")
    # the all-dense seed is the reference itself: measured once, as "dense"
    assert list(verified.name).count("dense") == 1 and verified.kind[0] == "dense"
    assert {"uniform-30%", "uniform-50%", "uniform-70%"} <= set(verified.name)
    assert [c for c in verified.columns if c.startswith("sparsity_")] == ["sparsity_000", "sparsity_001", "sparsity_002"]
    invoke("export", "--study", out, "--pareto", "--out", tmp_path / "front")
    exported = [Profile.load(p) for p in (tmp_path / "front").glob("*.json")]
    assert exported and all(p.method == "wisparse" for p in exported)
    assert all(p.thresholds is not None and p.calibration["key"] == meta["thresholds"] for p in exported)


def test_rsparse_search_end_to_end(invoke, tiny_model, tmp_path, cal, monkeypatch):
    """Per-layer (sparsity, rank) pairs: seeds at the rank grid's middle, SVD factors cached once,
    ranks in trials.csv, in verify and in the exported profiles."""
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    common = ["--calibration", cal, "--calibration-samples", 4, "--latency-tokens", 2, "--latency-prompts", 1,
              "--latency-repeats", 1, "--backend", "numba-cpu", "--no-report"]
    invoke("search", "--model", tiny_model("llama-silu"), "--method", "rsparse", "--out", out,
           "--sparsity-range", "0.2:0.8", "--sparsity-step", "0.1", "--rank-range", "0:16", "--rank-step", 4,
           "--space", "groups:2", "--no-verify", "--budget", 6, *common)
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.seed[:4]) == ["dense", "uniform-30%", "uniform-50%", "uniform-70%"]
    assert trials.loc[2, ["rank_000", "rank_001", "rank_002"]].tolist() == [8, 8, 8]  # the grid's middle rank
    assert {"param_g00_rank", "param_g01_rank"} <= set(trials.columns)
    sampled = trials.iloc[4:]
    assert sampled.param_g00_rank.isin([0, 4, 8, 12, 16]).all()
    assert (sampled.rank_000 == sampled.param_g00_rank).all() and (sampled.rank_002 == sampled.param_g01_rank).all()
    meta = json.loads((out / "study.json").read_text())
    assert meta["method"] == "rsparse" and "rank[0:16/4]" in meta["space"]
    assert len(list((tmp_path / "cache" / "lowrank").glob("svd-r16-*.pt"))) == 1
    prof_path = tmp_path / "r.json"
    invoke("profile", "make", "--model", tiny_model("llama-silu"), "--method", "rsparse", "--uniform", "0.5",
           "--rank", 8, "--calibration", cal, "--out", prof_path)
    prof = Profile.load(prof_path)
    assert prof.ranks == (8, 8, 8) and all(set(t) == {"gate", "up", "down"} for t in prof.thresholds)
    # verify, with a trial off the front and a profile file measured alongside for comparison only
    invoke("verify", "--study", out, "--repeats", 2, "--no-report", "--also", "trial-5", "--also", prof_path)
    verified = pd.read_csv(out / "verified.csv")
    assert "rank_000" in verified.columns and {"uniform-50%"} <= set(verified.name)
    also = verified[verified.kind == "also"]
    assert "trial-5" in set(verified.name) and "r" in set(also.name)  # trial-5 once, as front or as also
    assert not also.on_front.any() and also.accuracy.notna().all()
    assert also.latency_ratio.notna().all() and also.vs_dense.str.len().gt(0).all()
    invoke("export", "--study", out, "--pareto", "--out", tmp_path / "front")
    exported = [Profile.load(p) for p in (tmp_path / "front").glob("*.json")]
    assert exported and all(p.method == "rsparse" for p in exported)
    assert all(p.name != "r" for p in exported)
    assert any(p.ranks for p in exported if any(a is not None for a in p.levels))
    rc, errors, err = _main("verify", "--study", out, "--also", "trial-99", "--no-report")
    assert rc == 2 and errors == ["error: --also trial-99: no finished trial 'trial-99' in study 'demo'"], err
    rc, errors, err = _main("search", "--model", tiny_model("llama-silu"), "--method", "rsparse", "--out",
                            tmp_path / "big", "--rank-range", "0:128", "--rank-step", 64, "--budget", 1, *common)
    assert rc == 2 and len(errors) == 1 and "above this model's MLP projections' smaller side (72)" in errors[0], err
    rc, errors, err = _main("search", "--method", "rsparse", "--rank-range", "0:60", "--rank-step", 16, "--budget", 1)
    assert rc == 2 and errors == ["error: --rank-step must be a whole number that divides --rank-range 0:60, not 16"]


def _main(*args):
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return proc.returncode, errors, proc.stderr


def test_silu_model_without_method_is_a_one_line_hint(tiny_model, tmp_path):
    rc, errors, err = _main("search", "--model", tiny_model("llama-silu"), "--out", tmp_path / "x", "--budget", 1,
                            "--fidelity", "proxy")
    assert rc == 2 and "Traceback" not in err and len(errors) == 1, err[-2000:]
    assert "choose a method with --method cats / teal / wisparse" in errors[0]
    rc, errors, err = _main("search", "--method", "magic", "--budget", 1)
    assert rc == 2 and errors == ["error: --method must be one of sparseinfer, cats, teal, wisparse, rsparse, not 'magic'"], err


def test_profile_make_with_method_writes_thresholds(invoke, tiny_model, tmp_path, cal, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "p.json"
    invoke("profile", "make", "--model", tiny_model("llama-silu"), "--method", "teal", "--uniform", "0.5",
           "--calibration", cal, "--out", out)
    prof = Profile.load(out)
    assert prof.method == "teal" and prof.levels == (0.5, 0.5, 0.5)
    assert all(set(t) == {"gate", "up", "down"} for t in prof.thresholds)
    assert prof.calibration["text"].startswith("file:cal.jsonl")
    res = invoke("calibrate", "--model", tiny_model("llama-silu"), "--method", "teal", "--calibration", cal)
    assert "layer   0:" in res.output


def test_latency_model_covers_rsparse_ranks(invoke, tiny_model, tmp_path, cal, monkeypatch):
    """The latency model of a ranked method times each layer's remainder at the rank grid's points and
    predicts per-layer (sparsity, rank) profiles; `bench latency-model` checks it on held-out ranked ones."""
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    study = tmp_path / "r.toml"
    study.write_text(f'[search]\nmodel = "{tiny_model("llama-silu")}"\nmethod = "rsparse"\ncalibration = "{cal}"\n'
                     'calibration_samples = 4\nsparsity_range = "0.2:0.8"\nsparsity_step = 0.1\nrank_range = "0:16"\n'
                     'rank_step = 4\nlatency_tokens = 3\nlatency_prompts = 1\nlatency_repeats = 2\n'
                     'backend = "numba-cpu"\ndevice = "cpu"\n')
    out = tmp_path / "lm.json"
    invoke("bench", "latency-model", "--study", study, "--heldout", 3, "--grid-points", 3, "--json", out)
    data = json.loads(out.read_text())
    model = LatencyModel.from_dict(data["latency_model"])
    assert model.ranks == (0, 8, 16) and len(model.rank_ms) == model.num_layers == 3
    assert all(row[0] == 0.0 and min(row) >= 0.0 for row in model.rank_ms)
    assert any(row.get("ranks") for row in data["heldout"])
    for row in data["heldout"]:
        prof = Profile(tuple(row["levels"]), methods="rsparse", ranks=tuple(row.get("ranks") or [0] * 3))
        assert model.predict_ratio(prof) == pytest.approx(row["predicted_ratio"])
    ranked = Profile((0.5, 0.5, 0.5), methods="rsparse", ranks=(16, 16, 16))
    plain = Profile((0.5, 0.5, 0.5), methods="rsparse")
    extra = sum(row[-1] for row in model.rank_ms)
    assert model.predict_ms(ranked) == pytest.approx(model.predict_ms(plain) + extra)
