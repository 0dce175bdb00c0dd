"""The strategy benchmark's bookkeeping (studies/search_efficiency/): hypervolume at equal time
counts only trials completed by then, staged runs are charged the latency model's build, the
common reference point covers every run, and a finished run is skipped when the benchmark resumes."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[2] / "studies" / "search_efficiency"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"search_efficiency_{name}", STUDY / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


analyze = _module("analyze")
run = _module("run")


def _run(sampler, latency, seed, elapsed, ratio, score, setup=10.0):
    return {"folder": f"{sampler}-{latency}-s{seed}", "sampler": sampler, "latency": latency, "seed": seed,
            "setup_s": setup, "elapsed_s": list(elapsed), "resumed": False, "ratio": list(ratio),
            "score": list(score), "measured": [True] * len(ratio)}


def test_hypervolume_at_time_counts_only_completed_trials():
    r = _run("random", "measured", 0, [10, 20, 30], [0.9, 0.5, 0.7], [-0.1, -0.2, -0.01])
    ref = (1.0, -1.0)
    assert analyze.at_time(r, ref, 5) == 0.0
    assert analyze.at_time(r, ref, 10) == pytest.approx(0.1 * 0.9)
    assert analyze.at_time(r, ref, 29) == analyze.curve(r, ref, 2)
    assert analyze.at_time(r, ref, 100) == analyze.curve(r, ref, 3) > analyze.curve(r, ref, 2)


def test_equal_time_charges_the_latency_model_and_counts_wins():
    # the same points; the staged runs finish trials sooner but one of them paid the model's build in set-up
    pts = dict(ratio=[0.9, 0.6, 0.5], score=[-0.05, -0.3, -0.2])
    runs = [_run("random", "measured", 0, [20, 40, 60], **pts, setup=10),
            _run("random", "measured", 1, [20, 40, 60], **pts, setup=10),
            _run("evo", "staged", 0, [45, 50, 55], **pts, setup=40),  # built the model: 30 s more set-up
            _run("evo", "staged", 1, [15, 20, 25], **pts, setup=10),  # found it cached
            _run("random", "staged", 0, [20, 80, 90], **pts, setup=10)]  # cached: its first trial by 50 s charged
    s = analyze.analyze_target(runs, max_kl=0.25)
    assert s["latency_model_build_s"] == pytest.approx(30.0)
    assert s["reference_point"] == {"latency_ratio": 1.0, "score": -0.25}
    assert s["nadir_point"]["latency_ratio"] >= 0.9 and s["nadir_point"]["score"] < -0.3
    # the KL-0.3 point lies beyond the ceiling: it adds nothing against the reference, only the nadir
    assert s["union_hypervolume"] == pytest.approx(0.1 * 0.2 + 0.4 * 0.05)
    assert s["equal_trials"] == 3
    assert s["equal_time_s"] == pytest.approx(55.0)  # both staged runs end at 55 s once the cached one is charged
    evo = s["configs"]["evo-staged"]
    assert evo["trials_done_at_equal_time"] == [3, 3]
    assert evo["beats_random_at_equal_time"] == "2 of 2"  # all three points, random only two by then
    rnd = s["configs"]["random-measured"]
    assert rnd["trials_done_at_equal_time"] == [2, 2] and rnd["beats_random_at_equal_time"] is None
    assert s["configs"]["random-staged"]["trials_done_at_equal_time"] == [1]
    assert rnd["hypervolume_at_equal_trials"]["median"] == evo["hypervolume_at_equal_trials"]["median"]


def test_a_model_every_log_found_cached_is_charged_to_no_run():
    pts = dict(ratio=[0.9, 0.6], score=[-0.05, -0.2])
    runs = [dict(_run("evo", "staged", 0, [30, 40], **pts, setup=25), built_model=False),
            dict(_run("random", "staged", 0, [20, 40], **pts, setup=10), built_model=False)]
    s = analyze.analyze_target(runs, max_kl=0.25)
    assert s["latency_model_build_s"] == 0.0 and s["equal_time_s"] == pytest.approx(40.0)
    # the log names the builder; the other run is charged its extra set-up
    runs[1]["built_model"] = True
    runs[1]["setup_s"] = 40
    s = analyze.analyze_target(runs, max_kl=0.25)
    assert s["latency_model_build_s"] == pytest.approx(15.0)
    assert runs[0]["charge_s"] == pytest.approx(15.0) and runs[1]["charge_s"] == 0.0


def test_runner_skips_finished_runs_and_builds_a_resumable_command(tmp_path):
    folder = run.run_dir(tmp_path, "demo", "evo", "staged", 2)
    cmd = run.command("demo", "evo", "staged", 2, 30, folder, ["--calibration-samples", "8"])
    assert cmd[:2] == ["sparseinfer-dse", "search"] and "--no-verify" in cmd
    assert cmd[cmd.index("--sampler") + 1] == "evo" and cmd[cmd.index("--latency-fidelity") + 1] == "staged"
    assert cmd[cmd.index("--out") + 1] == str(folder) and cmd[-2:] == ["--calibration-samples", "8"]
    assert not run.finished(folder, 30)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"invocations": [{"rc": 130, "budget": 30}, {"rc": 0, "budget": 20}]}))
    assert not run.finished(folder, 30) and run.finished(folder, 20)


def test_a_resumed_run_is_not_charged_the_time_between_its_invocations():
    spans = [(100.0, 160.0), (1000.0, 1100.0)]
    assert analyze.running_time(spans, 130.0) == 30.0
    assert analyze.running_time(spans, 500.0) == 60.0  # after the first invocation ended
    assert analyze.running_time(spans, 1040.0) == 100.0
