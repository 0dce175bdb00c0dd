"""The optuna study: seeds, budget, resumption, failure isolation, staged fidelity.

Objectives are (latency ms/token: minimise, accuracy: maximise). With `staged` fidelity the
optuna objective is the proxy score and lm-eval runs inside the trial only when the trial is on or
near the proxy front at that moment; since a front only improves, a trial dominated beyond the
margin then stays so, and every trial of the final front has its lm-eval figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.pareto import dominates
from sparseinfer_dse.search.spaces import Space

FIDELITIES = ("full", "proxy", "staged")
FINISHED = (TrialState.COMPLETE, TrialState.FAIL)


class Evaluator(Protocol):
    """What the search needs from the engine and the accuracy side (see search/evaluator.py)."""

    def latency(self, alphas: Sequence[Optional[float]]) -> dict[str, Any]: ...  # ms, ratio, noise_ms, ...
    def proxy(self, alphas: Sequence[Optional[float]]) -> dict[str, Any]: ...  # score (higher is better), ...
    def full(self, alphas: Sequence[Optional[float]]) -> dict[str, Any]: ...  # accuracy in points, ...


@dataclass
class SearchConfig:
    budget: int
    space: Space
    fidelity: str = "proxy"
    sampler: str = "tpe"
    seed: int = 0
    timeout: Optional[float] = None
    study_name: str = "sparseinfer-dse"
    storage: str = ""
    stage_margin: float = 0.1  # staged: promote trials within this fraction of the proxy range of the front
    identity: dict[str, Any] = field(default_factory=dict)  # what must match to resume/join a study
    worker: str = ""  # recorded on every trial: which process/device measured it


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, seed=seed, n_startup_trials=8)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"--sampler must be tpe, nsga2, gp or random, not {name!r}")


def open_study(cfg: SearchConfig) -> optuna.Study:
    """Create or resume the study; refuse one made for another model, space or objective."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=cfg.storage, study_name=cfg.study_name, load_if_exists=True,
        directions=["minimize", "maximize"], sampler=make_sampler(cfg.sampler, cfg.seed),
    )
    have = study.user_attrs.get("identity")
    if have is None:
        study.set_user_attr("identity", cfg.identity)
    elif have != cfg.identity:
        diff = sorted(k for k in set(have) | set(cfg.identity) if have.get(k) != cfg.identity.get(k))
        raise UserError(
            f"study {cfg.study_name!r} in {cfg.storage} was made with other settings ({', '.join(diff)} differ); "
            "use another --out/--name or the same settings"
        )
    return study


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def enqueue_seeds(study: optuna.Study, space: Space) -> None:
    """Uniform 1.00 and the paper's heuristic (1.03 on the first half), once per study."""
    if any("seed" in t.user_attrs for t in study.get_trials(deepcopy=False)):
        return
    n = space.n
    seeds = {"uniform-1.00": [1.0] * n, "paper-1.03": [1.03] * (n // 2) + [1.0] * (n - n // 2)}
    for name, alphas in seeds.items():
        study.enqueue_trial(space.params_for(alphas), user_attrs={"seed": name, "seed_alphas": alphas})


def _score(t: FrozenTrial) -> tuple[float, float, float]:
    return t.values[0], t.values[1], t.user_attrs.get("latency_noise_ms", 0.0)


def near_front(lat: float, score: float, noise: float, others: list[FrozenTrial], margin: float) -> bool:
    """True unless some finished trial dominates (lat, score) even after granting `margin`."""
    return not any(dominates(l, s, n, lat, score + margin, noise) for l, s, n in map(_score, others))


class Objective:
    def __init__(self, cfg: SearchConfig, evaluator: Evaluator) -> None:
        self.cfg = cfg
        self.ev = evaluator

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        cfg = self.cfg
        alphas = tuple(cfg.space.suggest(trial))
        if "seed_alphas" in trial.user_attrs:
            alphas = tuple(trial.user_attrs["seed_alphas"])
        trial.set_user_attr("alphas", list(alphas))
        if cfg.worker:
            trial.set_user_attr("worker", cfg.worker)
        try:
            lat = self.ev.latency(alphas)
            for key, value in lat.items():
                trial.set_user_attr(f"latency_{key}" if not key.startswith("latency") else key, value)
            ms = float(lat["ms"])
            if cfg.fidelity == "full":
                full = self.ev.full(alphas)
                self._record_full(trial, full)
                trial.set_user_attr("fidelity", {"latency": "measured", "accuracy": "lm-eval"})
                acc = float(full["accuracy"])
            else:
                prox = self.ev.proxy(alphas)
                for key, value in prox.items():
                    trial.set_user_attr(f"proxy_{key}", value)
                acc = float(prox["score"])
                fid = {"latency": "measured", "accuracy": "proxy"}
                if cfg.fidelity == "staged" and self._promote(trial, ms, acc):
                    self._record_full(trial, self.ev.full(alphas))
                    fid["accuracy_full"] = "lm-eval"
                trial.set_user_attr("fidelity", fid)
        except Exception as exc:  # recorded, then optuna marks the trial FAIL and the study goes on
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        if not (math.isfinite(ms) and math.isfinite(acc)):
            trial.set_user_attr("fail_reason", f"non-finite objective (latency {ms}, accuracy {acc})")
            raise ValueError(f"non-finite objective (latency {ms}, accuracy {acc})")
        return ms, acc

    @staticmethod
    def _record_full(trial: optuna.Trial, full: dict[str, Any]) -> None:
        trial.set_user_attr("accuracy_full", float(full["accuracy"]))
        for key, value in full.items():
            if key != "accuracy":
                trial.set_user_attr(f"full_{key}", value)

    def _promote(self, trial: optuna.Trial, ms: float, score: float) -> bool:
        if "seed" in trial.user_attrs:
            return True
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            return True
        scores = [t.values[1] for t in done] + [score]
        margin = self.cfg.stage_margin * (max(scores) - min(scores))
        noise = float(trial.user_attrs.get("latency_noise_ms", 0.0))
        return near_front(ms, score, noise, done, margin)


def run_study(study: optuna.Study, cfg: SearchConfig, evaluator: Evaluator,
              callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> int:
    """Run trials until the study holds `budget` finished trials (or timeout). Returns trials run."""
    enqueue_seeds(study, cfg.space)
    remaining = cfg.budget - finished_count(study)
    if remaining <= 0:
        return 0
    stop = optuna.study.MaxTrialsCallback(cfg.budget, states=FINISHED)
    study.optimize(Objective(cfg, evaluator), n_trials=remaining, timeout=cfg.timeout, catch=(Exception,),
                   callbacks=[stop, *callbacks], gc_after_trial=False)
    return remaining
