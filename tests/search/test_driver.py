"""Driver mechanics with a deterministic evaluator (no model): seeds, budget, resume, failures,
staging, outputs, export, report. The real engine runs in test_search_cli.py."""

import re
from dataclasses import replace

import pandas as pd
import pytest

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.driver import SearchConfig, finished_count, open_study, run_study
from sparseinfer_dse.search.export import choose, export_one
from sparseinfer_dse.search.outputs import write_outputs
from sparseinfer_dse.search.pareto import front_mask
from sparseinfer_dse.search.trial_measures import trial_measured
from sparseinfer_dse.search.report import write_report
from sparseinfer_dse.search.spaces import make_space, parse_level_grid
from sparseinfer_dse.engine.profile import Profile


class FakeEvaluator:
    """Lower alpha = faster and less accurate; optional failures on chosen calls."""

    def __init__(self, fail_on=()):
        self.calls = 0
        self.full_calls = []
        self.fail_on = set(fail_on)

    def resolve(self, p):
        return p

    def latency(self, profile):
        alphas = profile.levels
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("kernel exploded")
        ms = 10.0 + 5.0 * sum(alphas) / len(alphas)
        return {"ms": ms, "ratio": ms / 16.0, "noise_ms": 0.01, "layer_sparsity": [0.5] * len(alphas)}

    def proxy(self, profile):
        return {"score": -sum((1.1 - a) ** 2 for a in profile.levels), "kl": 0.0, "top1": 1.0}

    def full(self, profile):
        self.full_calls.append(profile.levels)
        return {"accuracy": 100.0 - 50 * sum((1.1 - a) ** 2 for a in profile.levels)}


def _cfg(tmp_path, budget, fidelity="proxy", **identity):
    space = make_space("per-layer", 4, parse_level_grid("0.9:1.1", 0.01))
    return SearchConfig(budget, space, fidelity, "tpe", 0, None, "t", f"sqlite:///{tmp_path / 'db.sqlite'}",
                        identity={"model": "fake", **identity}, worker="w0")


def _outputs(study, tmp_path, fidelity="proxy"):
    meta = {"model": "fake", "dense": {"ms": 15.0, "score": 0.0, "accuracy_full": 100.0}}
    write_outputs(study, tmp_path / "out", fidelity, None, meta)
    return tmp_path / "out"


def test_seeds_budget_resume_and_front(tmp_path):
    ev = FakeEvaluator()
    cfg = _cfg(tmp_path, 5)
    study = open_study(cfg)
    run_study(study, cfg, ev)
    assert finished_count(study) == 5
    seeds = [t.user_attrs.get("seed") for t in study.trials[:2]]
    assert seeds == ["uniform-1.00", "paper-1.03"]
    assert Profile.from_dict(study.trials[1].user_attrs["profile"]).levels == (1.03, 1.03, 1.0, 1.0)
    # resume: same command with a larger budget adds trials up to it; seeds are not re-enqueued
    cfg2 = _cfg(tmp_path, 8)
    study2 = open_study(cfg2)
    run_study(study2, cfg2, ev)
    assert finished_count(study2) == 8
    assert sum("seed" in t.user_attrs for t in study2.trials) == 2
    assert [t.number for t in study2.trials] == list(range(8))
    out = _outputs(study2, tmp_path)
    trials = pd.read_csv(out / "trials.csv")
    front = pd.read_csv(out / "pareto.csv")
    ok = trials[trials.state == "COMPLETE"]
    brute = [
        r.trial for r in ok.itertuples()
        if not any((o.latency_ms < r.latency_ms - 0.01 and o.objective_accuracy >= r.objective_accuracy)
                   or (o.latency_ms <= r.latency_ms + 0.01 and o.objective_accuracy > r.objective_accuracy)
                   for o in ok.itertuples() if o.trial != r.trial)
    ]
    assert sorted(front.trial) == sorted(brute)
    assert {p.name for p in (out / "profiles").glob("*.json")} == {f"trial-{t:04d}.json" for t in front.trial}
    assert all(w == "w0" for w in trials.worker)


def test_failing_trial_is_recorded_and_study_goes_on(tmp_path):
    cfg = _cfg(tmp_path, 5)
    study = open_study(cfg)
    run_study(study, cfg, FakeEvaluator(fail_on={3}))
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1 and len(states) == 5
    failed = [t for t in study.trials if t.state.name == "FAIL"][0]
    assert "kernel exploded" in failed.user_attrs["fail_reason"]
    trials = pd.read_csv(_outputs(study, tmp_path) / "trials.csv")
    assert (trials.state == "FAIL").sum() == 1


def test_report_before_any_trial_finished(tmp_path):
    """Interrupted during the first trial, or all failed so far: the report still draws, frontless."""
    cfg = _cfg(tmp_path, 2)
    study = open_study(cfg)
    run_study(study, cfg, FakeEvaluator(fail_on={1, 2}))
    out = _outputs(study, tmp_path)
    html = write_report(out).read_text()
    assert "no front yet" in html and all((out / r).is_file() for r in re.findall(r'src="([^"]+)"', html))


def test_study_identity_mismatch_is_refused(tmp_path):
    open_study(_cfg(tmp_path, 2))
    with pytest.raises(UserError, match="model differ"):
        open_study(SearchConfig(2, _cfg(tmp_path, 2).space, "proxy", "tpe", 0, None, "t",
                                f"sqlite:///{tmp_path / 'db.sqlite'}", identity={"model": "other"}))


def test_staged_runs_lm_eval_only_near_the_front(tmp_path):
    ev = FakeEvaluator()
    cfg = _cfg(tmp_path, 12, fidelity="staged")
    cfg.stage_margin = 0.0
    study = open_study(cfg)
    run_study(study, cfg, ev)
    with_full = [t for t in study.trials if "accuracy_full" in t.user_attrs]
    assert 2 <= len(with_full) < 12  # seeds always, then only trials on the proxy front at their time
    assert len(ev.full_calls) == len(with_full)
    out = _outputs(study, tmp_path, "staged")
    front = pd.read_csv(out / "pareto.csv")
    assert front["accuracy_full"].notna().all()
    # every trial of the final proxy front got its lm-eval figure
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    mask = front_mask([trial_measured(t) for t in done])
    assert all("accuracy_full" in t.user_attrs for t, m in zip(done, mask) if m)


class PredictingEvaluator(FakeEvaluator):
    """FakeEvaluator with a latency model whose predictions are 3% high, +-5% intervals."""

    reference_ms = 15.0

    def predicted_latency(self, profile):
        ms = 1.03 * (10.0 + 5.0 * sum(profile.levels) / len(profile.levels))
        return {"ms": ms, "ci_low_ms": 0.95 * ms, "ci_high_ms": 1.05 * ms, "predicted_ms": ms}


def test_staged_latency_measures_only_near_the_front(tmp_path):
    ev = PredictingEvaluator()
    cfg = _cfg(tmp_path, 14)
    cfg.stage_margin, cfg.latency_fidelity = 0.0, "staged"
    study = open_study(cfg)
    run_study(study, cfg, ev)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    measured = [t for t in done if t.user_attrs["fidelity"]["latency"] == "measured"]
    assert 2 <= len(measured) < len(done) and ev.calls == len(measured)  # seeds always, then near the front
    assert all(t.user_attrs["fidelity"]["latency"] == "measured" for t in done if "seed" in t.user_attrs)
    for t in done:
        assert t.user_attrs["latency_predicted_ms"] > 0
        if t.user_attrs["fidelity"]["latency"] == "model":  # the prediction, with its interval, is the objective
            assert t.values[0] == pytest.approx(t.user_attrs["latency_predicted_ms"])
            assert t.user_attrs["latency_ci_high_ms"] == pytest.approx(1.05 * t.values[0])
        else:
            assert t.values[0] == pytest.approx(t.user_attrs["latency_predicted_ms"] / 1.03)
    mask = front_mask([trial_measured(t) for t in done])
    assert all(t.user_attrs["fidelity"]["latency"] == "measured" for t, m in zip(done, mask) if m)


def test_export_and_report(tmp_path):
    cfg = _cfg(tmp_path, 8, fidelity="full")
    study = open_study(cfg)
    run_study(study, cfg, FakeEvaluator())
    out = _outputs(study, tmp_path, "full")
    front = pd.read_csv(out / "pareto.csv")
    drop = 100.0 - float(front.accuracy.median()) + 1e-9  # a constraint that half the front meets, whatever was drawn
    row = choose(out, max_accuracy_drop=drop)
    ok = front[front.accuracy >= 100.0 - drop]
    assert 0 < len(ok) < len(front) or len(front) == 1
    assert row.trial == ok.sort_values("latency_ms").iloc[0].trial
    path, _ = export_one(out, tmp_path / "chosen.json", max_accuracy_drop=drop)
    assert Profile.load(path).num_layers == 4
    best = choose(out, max_latency=float(front.latency_ms.max()))
    assert best.accuracy == front.accuracy.max()
    with pytest.raises(UserError, match="no Pareto profile meets the constraint"):
        choose(out, max_latency=0.1)
    html = write_report(out).read_text()
    refs = re.findall(r'src="([^"]+)"', html)
    assert refs and all((out / r).is_file() and (out / r).stat().st_size > 1000 for r in refs)


def test_interrupt_swallowed_inside_a_trial_still_fails_it_and_stops(tmp_path, interrupt_inside_c_callback):
    """A Ctrl-C that lands where Python drops it (a C callback, e.g. Numba caching a kernel) still
    ends the trial as FAIL 'interrupted', re-queues its profile, and stops the worker."""
    from sparseinfer_dse import interrupts

    class InterruptedOnThirdLatency(FakeEvaluator):
        def resolve(self, p):
            return p

        def latency(self, profile):
            out = super().latency(profile)
            if self.calls == 3:
                interrupt_inside_c_callback()
            return out

    cfg = _cfg(tmp_path, 6)
    study = open_study(cfg)
    ev = InterruptedOnThirdLatency()
    with interrupts.caught():
        with pytest.raises(KeyboardInterrupt):
            run_study(study, cfg, ev)
    trials = study.get_trials()
    assert [t.state.name for t in trials[:3]] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[2].user_attrs["lost"] == "interrupted" and ev.calls == 3
    run_study(study, cfg, FakeEvaluator())  # the same run again: the interrupted profile runs once more
    again = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == 2]
    assert len(again) == 1 and again[0].params == trials[2].params and finished_count(study) == 6


def test_seeds_draw_independent_profiles(tmp_path):
    """Two --seed values share the enqueued seeds and nothing else (seed + trial count once made
    seed 1 replay seed 0's draws one trial later)."""
    drawn = []
    for seed in (0, 1):
        cfg = replace(_cfg(tmp_path / f"s{seed}", 10), sampler="random", seed=seed)
        (tmp_path / f"s{seed}").mkdir()
        study = open_study(cfg)
        run_study(study, cfg, FakeEvaluator())
        drawn.append({tuple(t.params.values()) for t in study.trials if "seed" not in t.user_attrs})
    assert len(drawn[0]) == len(drawn[1]) == 8
    assert not drawn[0] & drawn[1]


def test_rank_columns_show_zero_ranks():
    """An rsparse profile drawn with every rank 0 stores no ranks; its table row still says 0, not blank."""
    from sparseinfer_dse.search.trial_profile import level_columns

    zero = Profile((0.5, 0.4), methods="rsparse", ranks=(0, 0))
    assert zero.ranks is None
    assert level_columns(zero) == {"sparsity_000": 0.5, "sparsity_001": 0.4, "rank_000": 0, "rank_001": 0}
    assert "rank_000" not in level_columns(Profile((0.5, 0.4), methods="wisparse"))
