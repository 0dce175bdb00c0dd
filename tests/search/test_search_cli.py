"""`search` end to end through the CLI on a real (tiny) model: engine latency + KL proxy."""

import json

import pandas as pd
from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.profiles import AlphaProfile

_register()


def _invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_search_resume_export_report(tiny_model, tmp_path):
    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps({"prompt": f"Q: {i} + {i} =", "continuation": f" {2 * i} and more"})
                             for i in range(4)))
    model = tiny_model("llama-relu")
    out = tmp_path / "run"
    common = ["search", "--model", model, "--out", out, "--calibration", cal, "--calibration-samples", 4,
              "--latency-tokens", 2, "--latency-prompts", 1, "--latency-repeats", 1, "--alpha-range", "0.8:1.1",
              "--alpha-step", "0.05", "--backend", "numba-cpu", "--no-report"]
    _invoke(*common, "--budget", 3)
    _invoke(*common, "--budget", 4)
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4 and set(trials.state) == {"COMPLETE"}
    assert list(trials.seed[:2]) == ["uniform-1.00", "paper-1.03"]
    assert trials.latency_ms.gt(0).all() and trials.latency_dense_ms.gt(0).all()
    assert trials.proxy_kl.ge(0).all()
    meta = json.loads((out / "study.json").read_text())
    assert meta["dense"]["ms"] > 0 and meta["trials"] == {"COMPLETE": 4}
    _invoke("report", "--study", out)
    assert (out / "report.html").is_file() and (out / "pareto.png").is_file()
    _invoke("export", "--study", out, "--pareto", "--out", tmp_path / "front")
    for p in (tmp_path / "front").glob("*.json"):
        assert AlphaProfile.load(p).num_layers == 3
