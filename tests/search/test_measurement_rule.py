"""One profile, one measurement, on the demo: a profile exported from a search measures, under
`eval --profile` with no other flag, exactly what the search measured for it; and the search refuses
a task the profile cannot change (scored by log-likelihood: prefill only, which runs dense)."""

import json

from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.engine.profile import Profile

_register()


def test_eval_of_an_exported_profile_reproduces_the_search(invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    invoke("search", "--model", "demo", "--out", out, "--fidelity", "full", "--tasks", "demo_arith", "--limit", 24,
            "--batch-size", 8, "--budget", 3, "--alpha-range", "0.85:1.0", "--latency-tokens", 4,
            "--latency-repeats", 2, "--no-verify", "--no-report")
    invoke("export", "--study", out, "--pareto", "--out", tmp_path / "front")
    checked = 0
    for path in sorted((tmp_path / "front").glob("*.json")):
        prof = Profile.load(path)
        m = prof.metrics["measurement"]
        assert (m["limit"], m["batch_size"], m["tasks"]) == (24, 8, ["demo_arith"])
        res = invoke("eval", "--profile", path, "--out", tmp_path / f"eval-{path.stem}")
        assert "as the search measured it" in res.output and "not comparable" not in res.output
        summary = json.loads((tmp_path / f"eval-{path.stem}" / "summary.json").read_text())
        assert 100 * summary["tasks"]["demo_arith"]["value"] == prof.metrics["accuracy"]  # the same documents, answers
        checked += 1
    assert checked >= 1


def test_search_refuses_a_log_likelihood_task(tmp_path):
    res = CliRunner().invoke(app, ["search", "--model", "demo", "--tasks", "hellaswag", "--out", str(tmp_path / "r"),
                                   "--budget", "1"])
    assert res.exit_code != 0
    text = res.output + str(res.exception or "")
    assert "log-likelihood" in text and "prefill" in text and "Traceback" not in res.output
