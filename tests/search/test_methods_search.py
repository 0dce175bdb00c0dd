"""`search --method` on a SiLU model: calibrated once, seeds are dense and uniform 30/50/70%, the
levels are per-layer sparsities, exported profiles carry their thresholds and apply in `eval`."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
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
    assert rc == 2 and errors == ["error: --method must be one of sparseinfer, cats, teal, wisparse, not 'magic'"], err


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
