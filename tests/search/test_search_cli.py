"""`search` end to end through the CLI on a real (tiny) model: engine latency + KL proxy."""

import json

import pandas as pd
from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.engine.profile import Profile

_register()


def test_search_resume_export_report(invoke, tiny_model, tmp_path):
    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps({"prompt": f"Q: {i} + {i} =", "continuation": f" {2 * i} and more"})
                             for i in range(4)))
    model = tiny_model("llama-relu")
    out = tmp_path / "run"
    common = ["search", "--model", model, "--out", out, "--calibration", cal, "--calibration-samples", 4,
              "--latency-tokens", 2, "--latency-prompts", 1, "--latency-repeats", 1, "--alpha-range", "0.8:1.1",
              "--alpha-step", "0.05", "--backend", "numba-cpu", "--no-report"]
    invoke(*common, "--budget", 3)
    invoke(*common, "--budget", 4)
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4 and set(trials.state) == {"COMPLETE"}
    assert list(trials.seed[:2]) == ["uniform-1.00", "paper-1.03"]
    assert trials.latency_ms.gt(0).all() and trials.latency_dense_ms.gt(0).all()
    assert trials.proxy_kl.ge(0).all()
    meta = json.loads((out / "study.json").read_text())
    assert meta["dense"]["ms"] > 0 and meta["trials"] == {"COMPLETE": 4}
    invoke("report", "--study", out)
    assert (out / "report.html").is_file() and (out / "pareto.png").is_file()
    invoke("export", "--study", out, "--pareto", "--out", tmp_path / "front")
    for p in (tmp_path / "front").glob("*.json"):
        assert Profile.load(p).num_layers == 3


def test_ctrl_c_while_writing_outputs_leaves_whole_files(invoke, tiny_model, tmp_path, monkeypatch):
    """A Ctrl-C in the middle of a figure: exit 130 with one line, every file old or new but never
    half written, no temporary left; the same command again writes the rest."""
    import matplotlib.figure

    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps({"prompt": f"Q: {i} + 1 =", "continuation": f" {i + 1}"}) for i in range(2)))
    out = tmp_path / "run"
    common = ["search", "--model", tiny_model("llama-relu"), "--out", out, "--calibration", cal,
              "--calibration-samples", 2, "--latency-tokens", 2, "--latency-prompts", 1, "--latency-repeats", 1,
              "--backend", "numba-cpu"]
    invoke(*common, "--budget", 2)
    before = (out / "pareto.png").read_bytes()
    real_savefig = matplotlib.figure.Figure.savefig

    def interrupted_savefig(fig, path, **kw):
        with open(path, "wb") as f:
            f.write(before[:100])  # half a PNG, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted_savefig)
    res = CliRunner().invoke(app, [str(a) for a in (*common, "--budget", 3)], catch_exceptions=False)
    assert res.exit_code == 130, res.output
    assert "interrupted while writing" in res.output and "rerun the same command" in res.output
    assert (out / "pareto.png").read_bytes() == before  # the old figure, whole
    assert len(pd.read_csv(out / "trials.csv")) == 3  # written before the report
    assert not [p.name for p in out.rglob("*") if ".tmp" in p.name]
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", real_savefig)
    invoke(*common, "--budget", 3)
    assert (out / "pareto.png").read_bytes() != before and len(pd.read_csv(out / "trials.csv")) == 3


def test_search_with_staged_latency(invoke, tiny_model, tmp_path, monkeypatch):
    """--latency-fidelity staged: the latency model is measured once (cached), every trial records its
    prediction, the seeds and the trials near the front are measured, verify measures the front."""
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps({"prompt": f"Q: {i} + 2 =", "continuation": f" {i + 2}"}) for i in range(2)))
    out = tmp_path / "run"
    res = invoke("search", "--model", tiny_model("llama-relu"), "--out", out, "--calibration", cal,
                 "--calibration-samples", 2, "--latency-tokens", 2, "--latency-prompts", 1, "--latency-repeats", 2,
                 "--alpha-range", "0.8:1.1", "--alpha-step", "0.05", "--backend", "numba-cpu", "--budget", 6,
                 "--latency-fidelity", "staged", "--no-report")
    assert "measuring the latency model" in res.output
    assert len(list((tmp_path / "cache" / "latency_models").glob("*.json"))) == 1
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 6 and trials.latency_predicted_ms.gt(0).all()
    sources = [json.loads(f.replace("'", '"'))["latency"] for f in trials.fidelity]
    assert set(sources) <= {"model", "measured"} and sources[:2] == ["measured", "measured"]
    assert (out / "verified.csv").is_file()
