"""One profile, one measurement: `eval --profile P` measures as the search recorded in P, flags win
(with a note), and the table / summary.json carry 95% intervals from the per-document scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.eval.eval_job import EvalJob, task_intervals
from sparseinfer_dse.eval.items import pack

MEASUREMENT = {"tasks": ["demo_arith"], "limit": 6, "num_fewshot": None, "batch_size": 3, "backend": "numba-cpu",
               "seed": 7, "data_dir": None, "max_gen_toks": 8, "device": "cpu", "dtype": "float32",
               "decode_activation": None}

runner = CliRunner()


def run(*args):
    _register()
    return runner.invoke(app, ["eval", *map(str, args)])


def _profile(tmp_path: Path, measurement=MEASUREMENT) -> Path:
    from sparseinfer_dse.engine.profile import Profile

    metrics = {"trial": 2, "accuracy": 50.0, "fidelity": "staged"}
    if measurement is not None:
        metrics["measurement"] = measurement
    return Profile.uniform(2, 0.9).with_metrics(**metrics).save(tmp_path / "p.json")


# ---- the precedence rule, without running anything ---------------------------------------------
def test_profile_measurement_fills_what_no_flag_gave():
    job = EvalJob.resolve({"model": "demo"}, MEASUREMENT)
    assert job.tasks == ("demo_arith",) and job.limit == 6 and job.batch_size == 3 and job.backend == "numba-cpu"
    assert job.seed == 7 and job.max_gen_toks == 8 and job.device == "cpu" and job.dtype == "float32"
    assert job.overridden == ()
    lines = job.measurement_lines()
    assert lines == ["measurement: as the search measured it: demo_arith, limit 6, batch 3, backend numba-cpu, "
                     "seed 7, max tokens 8"]


def test_flags_win_and_an_override_is_noted():
    job = EvalJob.resolve({"batch_size": 2, "backend": "torch", "seed": 7, "tasks": "demo_arith"}, MEASUREMENT)
    assert job.batch_size == 2 and job.backend == "torch" and job.limit == 6
    assert job.overridden == ("batch_size", "backend")  # same seed and tasks as recorded: not overrides
    note = job.measurement_lines()[1]
    assert "batch 2 (profile: 3)" in note and "backend torch (profile: numba-cpu)" in note
    assert "not comparable" in note


def test_defaults_without_a_measurement():
    job = EvalJob.resolve({"tasks": "demo_arith, gsm8k"}, None)
    assert job.tasks == ("demo_arith", "gsm8k") and job.batch_size == 8 and job.backend == "torch"
    assert job.measurement_lines() == []
    with pytest.raises(OptionError) as info:
        EvalJob.resolve({}, None)
    assert info.value.field == "tasks"


def test_a_bad_recorded_value_says_where_it_came_from(tmp_path):
    with pytest.raises(OptionError) as info:
        EvalJob.resolve({}, {**MEASUREMENT, "data_dir": str(tmp_path / "gone")})
    assert "recorded in the profile's measurement" in str(info.value)
    assert EvalJob.resolve({"data_dir": tmp_path}, {**MEASUREMENT, "data_dir": "/gone"}).data_dir == tmp_path


# ---- intervals from the per-document items ----------------------------------------------------
def test_task_intervals_from_items():
    sparse = {"items": pack([1.0] * 10 + [0.0] * 10)}
    dense = {"items": pack([1.0] * 20)}
    iv = task_intervals(sparse, dense)
    lo, hi = iv["value_ci95"]
    assert lo < 50.0 < hi and iv["delta_items"] == -50.0
    assert iv["delta_ci95"][1] < 0 and iv["delta_beyond_noise"] is True
    same = task_intervals(sparse, sparse)
    assert same["delta_ci95"] == [0.0, 0.0] and same["delta_beyond_noise"] is False
    assert task_intervals({"value": 0.5}, dense) == {}  # no items: nothing to bootstrap
    assert "delta_ci95" not in task_intervals(sparse, None)


# ---- the command --------------------------------------------------------------------------------
def test_eval_follows_the_profile_without_tasks(small_lm_dir, tmp_path):
    out = tmp_path / "out"
    res = run("--model", small_lm_dir, "--profile", _profile(tmp_path), "--out", out, "--allow-model-mismatch")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert ("measurement: as the search measured it: demo_arith, limit 6, batch 3, backend numba-cpu, seed 7"
            in res.output)
    assert "not comparable" not in res.output
    assert "backend numba-cpu | limit 6 | batch 3 | seed 7" in res.output
    assert "value % [95%]" in res.output and "delta pts [95%]" in res.output
    assert "the profile records accuracy 50.00" in res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["batch_size"] == 3 and s["backend"] == "numba-cpu" and s["seed"] == 7 and s["limit"] == 6
    assert s["measurement"] == {"from_profile": True, "overridden": []}
    t = s["tasks"]["demo_arith"]
    assert t["n"] == 6
    lo, hi = t["value_ci95"]
    assert lo <= 100 * t["value"] <= hi
    dlo, dhi = t["delta_ci95"]
    assert dlo <= t["delta"] <= dhi and t["delta_items"] == pytest.approx(t["delta"])
    assert t["delta_beyond_noise"] == (dlo > 0 or dhi < 0)
    verdict = "beyond noise" if t["delta_beyond_noise"] else "within noise"
    assert verdict in res.output


def test_eval_flag_overrides_with_a_note(small_lm_dir, tmp_path):
    res = run("--model", small_lm_dir, "--profile", _profile(tmp_path), "--batch-size", 2, "--backend", "torch",
              "--no-baseline", "--allow-model-mismatch")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "measurement: as the search measured it" in res.output
    assert "batch 2 (profile: 3)" in res.output and "not comparable" in res.output
    assert "backend torch | limit 6 | batch 2 | seed 7" in res.output


def test_tasks_still_required_without_a_measurement(small_lm_dir, tmp_path):
    res = run("--model", small_lm_dir, "--profile", _profile(tmp_path, measurement=None))
    assert isinstance(res.exception, UserError), res.output
    assert str(res.exception) == "--tasks is required (or a --profile whose measurement records them)"


def test_numba_cpu_runs_batches(small_lm_dir, tmp_path):
    """The numba-cpu kernel takes B rows: no batch-1 refusal, and the same answers as torch."""
    prof = _profile(tmp_path, measurement=None)
    scores = {}
    for backend in ("numba-cpu", "torch"):
        out = tmp_path / backend
        res = run("--model", small_lm_dir, "--profile", prof, "--tasks", "demo_arith", "--limit", 6,
                  "--batch-size", 3, "--max-gen-toks", 8, "--backend", backend, "--no-baseline", "--out", out,
                  "--allow-model-mismatch")
        assert res.exit_code == 0, res.output + repr(res.exception)
        scores[backend] = json.loads((out / "summary.json").read_text())["tasks"]["demo_arith"]["value"]
    assert scores["numba-cpu"] == pytest.approx(scores["torch"], abs=1 / 6 + 1e-9)
