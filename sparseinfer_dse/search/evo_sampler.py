"""An EvoPress-style evolutionary sampler for optuna (`--sampler evo`).

EvoPress (Sieberling et al., "EvoPress: Towards Optimal Dynamic Model Compression via Evolutionary
Search") allocates per-layer compression levels by (1+lambda) evolution: from a parent profile it
makes offspring by *level switches* (one layer's level goes up one step while another's goes down
one step, so the mean level, the budget, stays the same), screens them on a calibration set (in
stages of growing size) and keeps the best one as the next parent if it beats the parent.

Here each optuna trial is one offspring:

- parent: a member of the Pareto front of the COMPLETE trials (directions as the study's), the one
  with the fewest children so far (ties broken at random). Children are counted from the
  `evo:parent` system attr each offspring records, so every worker of a shared storage sees them;
- offspring: the parent's parameters with 1-3 level switches (fewer more likely, as in EvoPress)
  among parameters that share one stepped distribution (a float with a step, or an int: a *group*);
  with probability `shift_prob` instead a *shift*: 1 to all members of one group (a random number)
  move one step the same way, which changes the budget by a small or a large amount, so the search
  also walks along the latency axis of the front. One categorical (or stepless float) parameter is
  resampled with probability `resample_prob`. Parameters the parent lacks are sampled at random.
  An offspring identical to an existing trial (any state, other workers' included) is redrawn;
- with probability `gap_prob` instead a *gap fill*: the two neighbours on the front with the widest
  gap between them (objectives scaled to the front's range, the width divided by 1 + the fills
  already tried there) give a child on the segment between them: every stepped parameter at the
  same fraction (uniform in [0, 1]) of the way from one to the other, on the grid. Level switches
  and shifts only walk out from front members a step at a time; when the front has a hole (on
  SmolLM2 on a 2-core CPU the mid-budget profiles were about as fast as dense, so dominated by it,
  and the front was dense and the fast end only) they may never reach it in a small budget;
- until `n_startup_trials` trials are COMPLETE, every parameter is sampled at random.

Where it differs from EvoPress: there are two objectives (latency, accuracy) instead of one
objective under a fixed budget, so selection is Pareto-front membership across trials, not "the
best of lambda offspring replaces the parent"; optuna proposes one trial at a time, so there are no
generations and no staged calibration sizes inside the sampler (the search's `staged` fidelity
plays that role: lm-eval only near the front); the shift move lets the budget drift, and the gap fill
(a recombination of two front members) has no counterpart in EvoPress, which keeps one budget.

The sampler holds no state between trials: every choice is drawn from a generator seeded by
(seed, trial number) and derived from `study.get_trials()`, so it can be recreated before every
trial (as the search driver does), resumed, and shared by many workers through one storage.
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.search_space import intersection_search_space
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

PARENT_KEY = "evo:parent"
TOWARD_KEY = "evo:toward"  # a gap fill's other end


class EvoSampler(optuna.samplers.BaseSampler):
    """(1+lambda)-style evolution over the Pareto front with level-switch mutations (module docstring)."""

    def __init__(self, seed: Optional[int] = None, n_startup_trials: int = 4, shift_prob: float = 0.3,
                 resample_prob: float = 0.1, max_retries: int = 16, gap_prob: float = 0.3) -> None:
        self._seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
        self.n_startup_trials = n_startup_trials
        self.shift_prob = shift_prob
        self.resample_prob = resample_prob
        self.max_retries = max_retries
        self.gap_prob = gap_prob
        self._offspring: dict[int, dict[str, Any]] = {}  # trial id -> the values sample_relative chose

    # ---- optuna's sampler API --------------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The parameters every finished trial has with the same distribution (empty while starting up)."""
        done = _complete(study)
        if len(done) < self.n_startup_trials:
            return {}
        return {k: d for k, d in intersection_search_space(done).items() if not d.single()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        fixed = trial.system_attrs.get("fixed_params", {})
        if not search_space or set(search_space) <= set(fixed):
            return {}  # starting up, or an enqueued trial: optuna applies its fixed params itself
        trials = study.get_trials(deepcopy=False)
        gap = self._gap(study, trials, trial) if self._rng(trial, "move").random() < self.gap_prob else None
        parent = gap[0] if gap else self._parent(study, trials, trial)
        rng = self._rng(trial, "mutate")
        known = {_key(_params(t), search_space) for t in trials if t.number != trial.number}
        for _ in range(max(1, self.max_retries)):
            child = (self._between(study, trial, gap[0], gap[1], search_space, rng) if gap
                     else self._mutate(study, trial, parent, search_space, rng))
            if _key(child, search_space) not in known:
                break
        study._storage.set_trial_system_attr(trial._trial_id, PARENT_KEY, parent.number)
        if gap:
            study._storage.set_trial_system_attr(trial._trial_id, TOWARD_KEY, gap[1].number)
        # The parent's values outside the search space are kept for sample_independent.
        self._offspring = {trial._trial_id: {**parent.params, **child}}
        return {k: v for k, v in child.items() if k in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """The offspring's (i.e. the parent's) value where it has one that fits, else a random one."""
        mine = self._offspring.get(trial._trial_id, {})
        if param_name in mine:
            value = mine[param_name]
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(value)):
                    return value
            except (ValueError, TypeError):
                pass
        return _random(self._rng(trial, f"random:{param_name}")).sample_independent(
            study, trial, param_name, param_distribution)

    # ---- the algorithm -----------------------------------------------------------------------------
    def _parent(self, study: optuna.Study, trials: Sequence[FrozenTrial], trial: FrozenTrial) -> FrozenTrial:
        """The front member with the fewest children: the front is explored evenly, and a new member
        (no children yet) is expanded next, as EvoPress continues from an improved parent."""
        front = pareto_front(_complete(study), study.directions)
        children = {t.number: 0 for t in front}
        for t in trials:
            n = t.system_attrs.get(PARENT_KEY)
            if n in children:
                children[n] += 1
        fewest = min(children.values())
        return self._rng(trial, "parent").choice([t for t in front if children[t.number] == fewest])

    def _gap(self, study: optuna.Study, trials: Sequence[FrozenTrial],
             trial: FrozenTrial) -> Optional[tuple[FrozenTrial, FrozenTrial]]:
        """The two front neighbours with the widest gap (scaled objectives; the width divided by
        1 + the fills already tried between them), in random order; None with fewer than two."""
        front = pareto_front(_complete(study), study.directions)
        if len(front) < 2:
            return None
        pts = _minimised(front, study.directions)
        span = np.ptp(pts, axis=0)
        z = (pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0)
        order = np.lexsort(z.T[::-1])  # along the front: by the first objective, then the next
        tried: dict[frozenset, int] = {}
        for t in trials:
            if TOWARD_KEY in t.system_attrs:
                pair = frozenset((t.system_attrs[PARENT_KEY], t.system_attrs[TOWARD_KEY]))
                tried[pair] = tried.get(pair, 0) + 1
        widths = [float(np.linalg.norm(z[b] - z[a])) / (1 + tried.get(frozenset((front[a].number, front[b].number)), 0))
                  for a, b in zip(order[:-1], order[1:])]
        i = int(np.argmax(widths))
        ends = [front[order[i]], front[order[i + 1]]]
        self._rng(trial, "gap").shuffle(ends)
        return ends[0], ends[1]

    def _between(self, study: optuna.Study, trial: FrozenTrial, parent: FrozenTrial, other: FrozenTrial,
                 space: dict[str, BaseDistribution], rng: random.Random) -> dict[str, Any]:
        """A gap fill: each stepped parameter the same fraction of the way from `parent`'s level to
        `other`'s (on the grid); any other parameter from either at random."""
        frac = rng.random()
        child: dict[str, Any] = {}
        for name, dist in space.items():
            mine, theirs = parent.params.get(name), other.params.get(name)
            if mine is None or parent.distributions.get(name) != dist:
                child[name] = _random(rng).sample_independent(study, trial, name, dist)
            elif theirs is None or other.distributions.get(name) != dist:
                child[name] = mine
            elif _grid(dist) is not None:
                a, b = _index(dist, mine), _index(dist, theirs)
                child[name] = _value(dist, int(round(a + frac * (b - a))))
            else:
                child[name] = mine if rng.random() < 0.5 else theirs
        return child

    def _mutate(self, study: optuna.Study, trial: FrozenTrial, parent: FrozenTrial,
                space: dict[str, BaseDistribution], rng: random.Random) -> dict[str, Any]:
        """The parent's values in `space` with 1-3 level switches, or a shift (module docstring)."""
        child: dict[str, Any] = {}
        steps: dict[str, list[int]] = {}  # stepped name -> [grid index, last index]
        other: list[str] = []
        for name, dist in space.items():
            if name not in parent.params or parent.distributions.get(name) != dist:
                child[name] = _random(rng).sample_independent(study, trial, name, dist)
            elif _grid(dist) is not None:
                child[name] = parent.params[name]
                steps[name] = [_index(dist, parent.params[name]), _grid(dist)]
            else:
                child[name] = parent.params[name]
                other.append(name)
        # A conditional categorical (one not every trial has) may be resampled too; the parent's
        # other values outside `space` reach the trial through sample_independent unchanged.
        dists = {**parent.distributions, **space}
        other += [n for n, d in parent.distributions.items() if n not in space and not d.single() and _grid(d) is None]
        groups: dict[BaseDistribution, list[str]] = {}
        for name in steps:
            groups.setdefault(space[name], []).append(name)
        switchable = [g for g in groups.values() if len(g) > 1]
        if steps and (not switchable or rng.random() < self.shift_prob):
            _shift(steps, rng.choice(list(groups.values())), rng)
        else:
            for _ in range(min(rng.randint(1, 3), rng.randint(1, 3))):  # EvoPress: biased to few
                _switch(steps, rng.choices(switchable, weights=[len(g) for g in switchable])[0], rng)
        for name, (k, _) in steps.items():
            if k != _index(space[name], child[name]):
                child[name] = _value(space[name], k)
        if other and rng.random() < self.resample_prob:
            name = rng.choice(sorted(other))
            child[name] = _random(rng).sample_independent(study, trial, name, dists[name])
        return child

    def _rng(self, trial: FrozenTrial, what: str) -> random.Random:
        """A generator for one use in one trial: a function of (seed, trial number, use) only."""
        return random.Random(f"{self._seed}:{trial.number}:{what}")


def _switch(steps: dict[str, list[int]], group: list[str], rng: random.Random) -> None:
    """Level switch: one member of `group` one step up, another one step down (the mean is kept)."""
    up = [n for n in group if steps[n][0] < steps[n][1]]
    down = [n for n in group if steps[n][0] > 0]
    if not up or not down or (len(up) == 1 and up == down):
        return  # every member at one end of the grid: nothing to switch
    a = rng.choice(up)
    b = rng.choice([n for n in down if n != a] or down)
    if a == b:  # down == [a]: another member goes up instead
        a = rng.choice([n for n in up if n != b])
    steps[a][0] += 1
    steps[b][0] -= 1


def _shift(steps: dict[str, list[int]], group: list[str], rng: random.Random) -> None:
    """Shift: 1 to all members of `group` (a random number) one step the same way: the budget
    moves by a little or a lot."""
    d = rng.choice((-1, 1))
    movable = [n for n in group if 0 <= steps[n][0] + d <= steps[n][1]]
    if not movable:  # all at that end of the grid: the other way
        d = -d
        movable = [n for n in group if 0 <= steps[n][0] + d <= steps[n][1]]
    for n in rng.sample(movable, rng.randint(1, len(movable))) if movable else []:
        steps[n][0] += d


def _random(rng: random.Random) -> optuna.samplers.RandomSampler:
    """A random sampler seeded from `rng`: optuna's draw for any distribution, made reproducible."""
    return optuna.samplers.RandomSampler(seed=rng.randrange(2**31))


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The trials no other trial dominates (no worse in every objective, better in one)."""
    if not trials:
        return []
    pts = _minimised(trials, directions)
    no_worse = (pts[:, None, :] <= pts[None, :, :]).all(axis=2)  # [q, p]: q no worse than p everywhere
    better = (pts[:, None, :] < pts[None, :, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=0)
    return [t for t, d in zip(trials, dominated) if not d]


def _minimised(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> np.ndarray:
    """The trials' objective values as [trial, objective], every objective turned to be minimised."""
    sign = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float) * sign


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with every objective value finite: the ones a front can be built from."""
    n = len(study.directions)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and len(t.values) == n and all(math.isfinite(v) for v in t.values)]


def _params(trial: FrozenTrial) -> dict[str, Any]:
    """What a trial runs: its suggested params, or, still WAITING, its enqueued ones."""
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def _grid(dist: BaseDistribution) -> Optional[int]:
    """The last grid index of a stepped distribution (a float with a step, an int); None otherwise."""
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return int(round((dist.high - dist.low) / dist.step))
    return None


def _index(dist: BaseDistribution, value: Any) -> int:
    """The grid index of `value` (clamped to the grid: an enqueued value may lie outside)."""
    k = int(round((float(value) - dist.low) / dist.step))
    return min(max(k, 0), _grid(dist))


def _value(dist: BaseDistribution, k: int) -> Any:
    """The grid value at index k, rounded so that float steps do not drift (0.15, not 0.15000000000000002)."""
    if isinstance(dist, IntDistribution):
        return dist.low + k * dist.step
    return round(dist.low + k * dist.step, 12)


def _key(params: dict[str, Any], space: dict[str, BaseDistribution]) -> tuple:
    """Params compared on the grid (so 1.03 and 1.0300000000000002 are one profile)."""
    out = []
    for name, dist in sorted(space.items()):
        value = params.get(name)
        out.append(_index(dist, value) if value is not None and _grid(dist) is not None else repr(value))
    return tuple(out)
