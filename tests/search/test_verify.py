"""`verify` on a finished search: dense, the seeds and the front measured again together;
verified.csv, the report's verified table and `export` preferring the verified figures."""

import json

import pandas as pd
from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.engine.profile import Profile

_register()


def test_verify_writes_verified_csv_and_export_prefers_it(invoke, tiny_model, tmp_path):
    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps({"prompt": f"Q: {i} + {i} =", "continuation": f" {2 * i} and more"})
                             for i in range(6)))
    out = tmp_path / "run"
    invoke("search", "--model", tiny_model("llama-relu"), "--out", out, "--calibration", cal,
            "--calibration-samples", 3, "--latency-tokens", 2, "--latency-prompts", 1, "--latency-repeats", 2,
            "--alpha-range", "0.8:1.1", "--alpha-step", "0.05", "--backend", "numba-cpu", "--budget", 4,
            "--no-verify", "--no-report")
    assert not (out / "verified.csv").exists()
    res = invoke("verify", "--study", out, "--repeats", 3)
    v = pd.read_csv(out / "verified.csv")
    assert v.kind.iloc[0] == "dense" and v.latency_ratio.iloc[0] == 1.0
    assert {"uniform-1.00", "paper-1.03"} <= set(v.name)  # the seeds always
    front = pd.read_csv(out / "pareto.csv")
    assert set(front.trial) <= set(v.trial.dropna().astype(int))  # every front point verified
    assert (v.latency_ci_low_ms <= v.latency_ms).all() and (v.latency_ms <= v.latency_ci_high_ms).all()
    assert (v.accuracy_low <= v.accuracy + 1e-12).all() and (v.accuracy <= v.accuracy_high + 1e-12).all()
    assert v.on_front.any() and v.verify_repeats.eq(3).all()
    assert v[v.kind != "dense"].vs_dense.str.contains("latency|faster|slower").all()
    assert "vs dense" in res.output and "verified" in (out / "report.html").read_text()
    chosen = v[(v.kind != "dense") & v.on_front].sort_values("latency_ms").iloc[0]
    res = invoke("export", "--study", out, "--max-latency", 1e9, "--out", tmp_path / "p.json")
    assert "verified figures" in res.output
    prof = Profile.load(tmp_path / "p.json")
    assert prof.metrics["verified"]["repeats"] == 3 and "latency_ci_low_ms" in prof.metrics["verified"]
    assert prof.metrics["verified"]["accuracy"] == max(v[(v.kind != "dense") & v.on_front].accuracy)
    assert chosen.latency_ms > 0


def test_verify_refuses_a_folder_without_options(tmp_path):
    (tmp_path / "study.json").write_text("{}")
    res = CliRunner().invoke(app, ["verify", "--study", str(tmp_path)])
    assert res.exit_code != 0 and "older version" in str(res.exception or res.output)
