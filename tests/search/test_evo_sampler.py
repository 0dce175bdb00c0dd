"""EvoSampler (search/evo_sampler.py): level switches keep the budget, stay on the grid, start from
the Pareto front; gap fills land between the widest front neighbours and move on; random start-up;
enqueued trials; determinism; statelessness (recreated before every trial, two workers on one
storage); and it beats random search on a toy allocation problem.
Pure optuna, in-memory studies, a synthetic objective: seconds."""

import math

import numpy as np
import optuna
import pytest

from sparseinfer_dse.errors import OptionError
from sparseinfer_dse.search.driver import SearchConfig, make_sampler, open_study, run_study
from sparseinfer_dse.search.evo_sampler import PARENT_KEY, TOWARD_KEY, EvoSampler, pareto_front
from sparseinfer_dse.search.options import SearchOptions
from sparseinfer_dse.search.spaces import make_space, parse_level_grid

optuna.logging.set_verbosity(optuna.logging.WARNING)

N, LOW, HIGH, STEP = 12, 0.0, 0.9, 0.05
WEIGHTS = np.linspace(0.2, 3.0, N)  # layers differ in how much a level costs in accuracy


def levels(trial):
    return [trial.suggest_float(f"s{i:03d}", LOW, HIGH, step=STEP) for i in range(N)]


def toy(trial):
    """Latency falls with the mean level; accuracy loss grows with the weighted squares, so the best
    profile at a budget puts high levels on the cheap layers."""
    x = np.array(levels(trial))
    return 1.0 - float(x.mean()), -float(np.sum(WEIGHTS * x ** 2))


def study_with(sampler=None):
    return optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)


def run(study, make, n, objective=toy):
    """One trial at a time with a fresh sampler each, as the search driver does."""
    for _ in range(n):
        study.sampler = make(len(study.get_trials()))
        study.optimize(objective, n_trials=1)


def grid_index(v):
    return round((v - LOW) / STEP)


def on_grid(params):
    return all(LOW <= v <= HIGH and abs((v - LOW) / STEP - grid_index(v)) < 1e-8 for v in params.values())


def evo_children(study):
    return [t for t in study.get_trials() if PARENT_KEY in t.system_attrs]


def test_level_switch_keeps_the_budget_and_the_grid():
    study = study_with()
    run(study, lambda n: EvoSampler(seed=n, shift_prob=0.0, gap_prob=0.0), 30)
    kids = evo_children(study)
    assert len(kids) == 30 - 4
    for t in kids:
        parent = study.trials[t.system_attrs[PARENT_KEY]]
        assert t.params != parent.params
        assert on_grid(t.params)
        assert sum(map(grid_index, t.params.values())) == sum(map(grid_index, parent.params.values()))
        moved = sum(abs(grid_index(t.params[k]) - grid_index(parent.params[k])) for k in t.params)
        assert 2 <= moved <= 6  # 1-3 switches, each one step up and one step down


def test_shift_moves_some_levels_one_step_the_same_way():
    study = study_with()
    run(study, lambda n: EvoSampler(seed=n, shift_prob=1.0, gap_prob=0.0), 16)
    sizes = set()
    for t in evo_children(study):
        parent = study.trials[t.system_attrs[PARENT_KEY]]
        diff = [grid_index(t.params[k]) - grid_index(parent.params[k]) for k in t.params]
        moved = [d for d in diff if d]
        assert moved and (set(moved) == {1} or set(moved) == {-1}) and on_grid(t.params)
        sizes.add(len(moved))
    assert len(sizes) > 2  # from one layer to many: small and large budget changes


def test_parent_is_on_the_front_at_the_time():
    study = study_with()
    run(study, lambda n: EvoSampler(seed=n), 25)
    for t in evo_children(study):
        before = [s for s in study.trials[:t.number] if s.state == optuna.trial.TrialState.COMPLETE]
        assert t.system_attrs[PARENT_KEY] in {s.number for s in pareto_front(before, study.directions)}


def uniform_trial(study, level, values):
    params = {f"s{i:03d}": level for i in range(N)}
    dists = {k: optuna.distributions.FloatDistribution(LOW, HIGH, step=STEP) for k in params}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=list(values)))


def dominated(trial):
    levels(trial)
    return 2.0, -50.0  # slower and worse than every seeded trial: the front never changes


def test_gap_fill_lands_between_the_front_with_a_hole():
    """The front is dense and the fast end (the mid profile measured slower than dense, as on
    SmolLM2 on a CPU): a gap fill puts a child on the segment between them."""
    study = study_with()
    for level, values in ((0.0, (1.00, 0.0)), (0.5, (1.02, -0.4)), (0.7, (0.80, -2.0)), (0.3, (1.05, -0.1))):
        uniform_trial(study, level, values)
    for n in range(6):
        study.sampler = EvoSampler(seed=n, gap_prob=1.0)
        study.optimize(dominated, n_trials=1)
    for t in study.trials[4:]:
        assert {t.system_attrs[PARENT_KEY], t.system_attrs[TOWARD_KEY]} == {0, 2}
        assert len(set(t.params.values())) == 1  # one fraction of the way for every layer
        assert 0 <= grid_index(t.params["s000"]) <= grid_index(0.7) and on_grid(t.params)
    assert len({t.params["s000"] for t in study.trials[4:]}) > 2


def test_gap_fill_moves_to_the_next_gap_once_one_was_tried():
    study = study_with()
    for level, values in ((0.0, (1.0, 0.0)), (0.4, (0.6, -1.0)), (0.8, (0.5, -1.5)), (0.2, (1.2, -3.0))):
        uniform_trial(study, level, values)  # front 0, 1, 2; gaps: 0-1 wide, 1-2 narrower
    pairs = []
    for n in range(6):
        study.sampler = EvoSampler(seed=n, gap_prob=1.0)
        study.optimize(dominated, n_trials=1)
        t = study.trials[-1]
        pairs.append(frozenset((t.system_attrs[PARENT_KEY], t.system_attrs[TOWARD_KEY])))
    assert pairs[0] == {0, 1} and {1, 2} in pairs and set(pairs) == {frozenset({0, 1}), frozenset({1, 2})}


def test_random_until_enough_complete_trials():
    study = study_with()
    run(study, lambda n: EvoSampler(seed=n, n_startup_trials=6), 8)
    assert [PARENT_KEY in t.system_attrs for t in study.trials] == [False] * 6 + [True] * 2
    first = study.trials[0].params.values()
    assert len(set(first)) > 3 and on_grid(study.trials[0].params)  # independent draws per parameter


def test_enqueued_trials_keep_their_params():
    study = study_with()
    run(study, lambda n: EvoSampler(seed=n), 6)
    fixed = {f"s{i:03d}": 0.5 for i in range(N)}
    study.enqueue_trial(fixed)
    study.enqueue_trial({"s000": 0.9})  # partly fixed: the rest comes from the sampler
    run(study, lambda n: EvoSampler(seed=n), 2)
    whole, part = study.trials[-2:]
    assert whole.params == fixed and PARENT_KEY not in whole.system_attrs
    assert part.params["s000"] == 0.9 and on_grid(part.params)


def test_deterministic_for_the_same_seed_and_trials():
    a, b = study_with(), study_with()
    run(a, lambda n: EvoSampler(seed=7 + n), 15)
    run(b, lambda n: EvoSampler(seed=7 + n), 15)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    c = study_with()
    run(c, lambda n: EvoSampler(seed=8 + n), 15)
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_one_sampler_for_the_whole_study_matches_a_fresh_one_per_trial():
    """Nothing is carried from one trial to the next: the draws depend on (seed, trial number) and
    the study only."""
    a, b = study_with(EvoSampler(seed=3)), study_with()
    a.optimize(toy, n_trials=12)
    run(b, lambda n: EvoSampler(seed=3), 12)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_two_workers_share_one_storage():
    storage = optuna.storages.InMemoryStorage()
    w1 = optuna.create_study(storage=storage, study_name="s", directions=["minimize", "maximize"])
    w2 = optuna.load_study(storage=storage, study_name="s")
    for i in range(20):
        worker = (w1, w2)[i % 2]
        worker.sampler = EvoSampler(seed=100 * (i % 2) + len(worker.get_trials()))
        worker.optimize(toy, n_trials=1)
    trials = w1.get_trials()
    assert len(trials) == 20 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    keys = [tuple(t.params.values()) for t in trials]
    assert len(set(keys)) == len(keys)  # no profile proposed twice
    assert len(evo_children(w1)) == 16


def test_other_distributions_by_kind():
    """A paired categorical (e.g. a rank per level) is kept or resampled; an int joins its own switches."""
    def objective(trial):
        x = levels(trial)
        ranks = [trial.suggest_categorical(f"s{i:03d}_rank", [0, 16, 32, 64, 128]) for i in range(3)]
        first = trial.suggest_int("first", 0, 4)
        return 1.0 - float(np.mean(x)) + 0.001 * first, -float(np.sum(WEIGHTS * np.square(x))) - 1e-4 * sum(ranks)

    study = study_with()
    run(study, lambda n: EvoSampler(seed=n, resample_prob=0.5, gap_prob=0.0), 25, objective)
    kids = evo_children(study)
    assert kids
    for t in kids:
        parent = study.trials[t.system_attrs[PARENT_KEY]]
        assert all(t.params[f"s{i:03d}_rank"] in (0, 16, 32, 64, 128) for i in range(3))
        assert 0 <= t.params["first"] <= 4
        changed = [k for k in t.params if t.params[k] != parent.params[k]]
        assert sum(k.endswith("_rank") for k in changed) <= 1


def test_a_conditional_parameter_comes_from_the_parent():
    """Not every trial has it, so it is outside the relative search space: copied all the same."""
    def objective(trial):
        x = levels(trial)
        rank = trial.suggest_categorical("s000_rank", [0, 16, 32, 64, 128]) if x[0] > 0.3 else 0
        return 1.0 - float(np.mean(x)), -float(np.sum(WEIGHTS * np.square(x))) - 1e-3 * rank

    study = study_with()
    run(study, lambda n: EvoSampler(seed=n, resample_prob=0.0), 30, objective)
    pairs = [(t.params["s000_rank"], study.trials[t.system_attrs[PARENT_KEY]].params.get("s000_rank"))
             for t in evo_children(study) if "s000_rank" in t.params]
    assert any(p is not None for _, p in pairs) and all(c == p for c, p in pairs if p is not None)


def test_parameters_the_parent_lacks_are_sampled():
    study = study_with()
    run(study, lambda n: EvoSampler(seed=n), 6)

    def wider(trial):
        out = toy(trial)
        trial.suggest_float("extra", 0.0, 1.0, step=0.25)
        return out

    run(study, lambda n: EvoSampler(seed=n), 3, wider)
    assert all(t.params["extra"] in (0.0, 0.25, 0.5, 0.75, 1.0) for t in study.trials[-3:])


def hypervolume(study, ref=(1.0, -20.0)):
    pts = sorted((t.values[0], t.values[1]) for t in study.best_trials)  # latency up, accuracy up
    hv, best = 0.0, ref[1]
    for i, (lat, acc) in enumerate(pts):
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref[0]
        best = max(best, acc)
        hv += max(0.0, nxt - lat) * max(0.0, best - ref[1])
    return hv


def test_beats_random_on_a_toy_allocation_problem():
    def search(make, seed):
        study = study_with()
        # Seeds as the search enqueues them: uniform allocations at a few budgets.
        for u in (0.3, 0.5, 0.7):
            study.enqueue_trial({f"s{i:03d}": u for i in range(N)})
        run(study, lambda n: make(seed * 1000 + n), 40)
        seeds = study.trials[:3]
        better = any(t.values[0] <= s.values[0] and t.values[1] > s.values[1] for s in seeds for t in study.trials)
        return hypervolume(study), better

    evo = [search(lambda s: EvoSampler(seed=s), seed) for seed in range(5)]
    rnd = [search(lambda s: optuna.samplers.RandomSampler(seed=s), seed) for seed in range(5)]
    assert np.mean([hv for hv, _ in evo]) > np.mean([hv for hv, _ in rnd])
    # EvoPress's point: at a seed's budget, switches find a better allocation than uniform.
    assert sum(better for _, better in evo) > sum(better for _, better in rnd)


class ToyEvaluator:
    """Lower sparsity: slower and more accurate; the later layers cost more accuracy."""

    def resolve(self, profile):
        return profile

    def latency(self, profile):
        return {"ms": 10.0 - 5.0 * float(np.mean([s or 0.0 for s in profile.levels]))}  # None: dense

    def proxy(self, profile):
        return {"score": -sum((i + 1) * (s or 0.0) ** 2 for i, s in enumerate(profile.levels))}


def test_search_driver_runs_and_resumes_with_evo(tmp_path):
    def cfg(budget):
        space = make_space("per-layer", 6, parse_level_grid("0.0:0.9", 0.05, "teal"))
        return SearchConfig(budget, space, "proxy", "evo", 0, None, "t", f"sqlite:///{tmp_path / 'db.sqlite'}",
                            identity={"model": "toy"})

    for budget in (10, 14):  # the second run resumes the study
        study = open_study(cfg(budget))
        run_study(study, cfg(budget), ToyEvaluator())
    trials = study.get_trials()
    assert len(trials) == 14 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get("seed") for t in trials[:4]] == ["dense", "uniform-30%", "uniform-50%", "uniform-70%"]
    assert len(evo_children(study)) == 10  # every trial after the four seeds


def test_make_sampler_and_options_know_evo():
    assert isinstance(make_sampler("evo", 0), EvoSampler)
    assert SearchOptions(model="m", sampler="evo").sampler == "evo"
    with pytest.raises(OptionError) as info:
        SearchOptions(model="m", sampler="cma")
    assert "evo" in str(info.value)
    with pytest.raises(OptionError):
        make_sampler("cma", 0)


def test_pareto_front_follows_directions():
    study = study_with()
    for v in [(1.0, 1.0), (2.0, 2.0), (2.0, 1.0), (0.5, 0.0), (1.0, 1.0)]:
        study.add_trial(optuna.trial.create_trial(values=list(v)))
    front = pareto_front(study.trials, study.directions)
    assert sorted(t.number for t in front) == [0, 1, 3, 4]
    assert not math.isnan(hypervolume(study))
