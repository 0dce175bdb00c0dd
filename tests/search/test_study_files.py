"""The committed study definitions parse, and use only real `search` option names."""

import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparseinfer_dse.cli.search import search_command

STUDIES = sorted((Path(__file__).parents[2] / "studies").glob("*.toml"))
OPTIONS = set(inspect.signature(search_command).parameters) - {"ctx"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_study_file_keys_are_search_options(path):
    table = tomllib.loads(path.read_text())["search"]
    assert set(table) <= OPTIONS, set(table) - OPTIONS
    assert table["budget"] >= 1 and table["model"]


def test_studies_exist():
    assert {p.name for p in STUDIES} >= {"demo.toml", "synthetic-7b.toml", "prosparse-llama2-7b.toml",
                                         "prosparse-llama2-13b.toml"}


def test_bad_study_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[search]\nmodel = "demo"\nbudgit = 3\n')
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", "search",
                           "--study", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown keys budgit" in proc.stderr and "Traceback" not in proc.stderr


def _resolved(monkeypatch, args):
    """The settings `search` would run with (run_search replaced by a recorder)."""
    import sparseinfer_dse.search.session as session
    from typer.testing import CliRunner

    from sparseinfer_dse.cli import _register, app

    seen = {}

    def record(opts, say):
        seen.update(opts.to_dict())
        return session.SearchOutcome(opts.out_dir, {"trials": {"COMPLETE": 0}, "front_size": 0})

    monkeypatch.setattr(session, "run_search", record)
    _register()
    result = CliRunner().invoke(app, ["search", *args])
    assert result.exit_code == 0, result.output
    return seen


def test_study_file_values_apply_and_flags_override(tmp_path, monkeypatch):
    f = tmp_path / "s.toml"
    f.write_text('[search]\nmodel = "demo"\nbudget = 7\nalpha_range = "0.9:1.0"\nsampler = "random"\n')
    v = _resolved(monkeypatch, ["--study", str(f), "--sampler", "nsga2"])
    assert (v["budget"], v["alpha_range"], v["sampler"]) == (7, "0.9:1.0", "nsga2")
    assert v["tasks"] is None  # a study file turns the demo defaults off


def test_demo_model_defaults_to_staged_demo_arith(monkeypatch):
    v = _resolved(monkeypatch, ["--model", "demo", "--budget", "3"])
    assert (v["tasks"], v["limit"], v["alpha_range"]) == ("demo_arith", 100, "0.85:1.10")
    v = _resolved(monkeypatch, ["--model", "demo", "--fidelity", "proxy", "--alpha-range", "0.9:1.0"])
    assert v["tasks"] is None and v["alpha_range"] == "0.9:1.0"
