"""The optuna study: seeds, budget, resumption, failure isolation, staged fidelity, many workers.

Objectives are (latency ms/token: minimise, accuracy: maximise). With `staged` fidelity the
optuna objective is the proxy score and lm-eval runs inside the trial only when the trial is on or
near the proxy front at that moment; since a front only improves, a trial dominated beyond the
margin then stays so, and every trial of the final front has its lm-eval figure. With staged
latency (`latency_fidelity`), a trial's latency is first the latency model's prediction (with
+-latency_model_error as its interval) and is measured only when the trial, scored, is on or near
the front the same way; `fidelity["latency"]` says which it kept.

Many workers (processes, GPUs, machines) can run one study through a shared storage. The budget is
global: a worker claims a trial only while `counted + running < budget`, under a cross-process lock
(search/storage.py), so the study ends with exactly `budget` counted trials. Counted are COMPLETE
trials and trials the evaluation itself failed; a trial lost with its worker (SIGKILL: failed by
the heartbeat check; Ctrl-C) is FAIL but not counted, and its profile is enqueued again once.
A worker whose budget is all claimed waits for the other workers' running trials (and fails those of
dead workers) before it returns, so its outputs show the finished study.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.interrupts import check as check_interrupt
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.search.evo_sampler import EvoSampler
from sparseinfer_dse.search.pareto import Measured, dominates, front_mask
from sparseinfer_dse.search.spaces import Space
from sparseinfer_dse.search.storage import (GRACE_PERIOD, HEARTBEAT_INTERVAL, ClaimLock, StaleCheck, is_storage_error,
                                            open_storage, rdb_of, reachable, redact, requeue_lost,
                                            storage_error_line, study_counts)
from sparseinfer_dse.search.trial_measures import trial_measured
from sparseinfer_dse.search.trial_profile import PROFILE, SEED_PROFILE, seed_profile


OUTAGE_LIMIT = 300.0  # seconds a worker waits for an unreachable database (see run_study)


class Evaluator(Protocol):
    """What the search needs from the engine and the accuracy side (see search/evaluator.py)."""

    def resolve(self, profile: Profile) -> Profile: ...  # the profile as it will run (calibrated thresholds in)
    def latency(self, profile: Profile) -> dict[str, Any]: ...  # ms, ci_low_ms, ci_high_ms, ratio, ...
    def proxy(self, profile: Profile) -> dict[str, Any]: ...  # score (higher is better), ci_low, ci_high, items
    def full(self, profile: Profile) -> dict[str, Any]: ...  # accuracy (points), accuracy_ci_low/high, items


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
    latency_fidelity: str = "measured"  # staged: the latency model's prediction, measured only near the front
    identity: dict[str, Any] = field(default_factory=dict)  # what must match to resume/join a study
    worker: str = ""  # recorded on every trial: which process/device measured it (host:pid:device)
    device: str = ""  # recorded on every trial: the device kind and name that measured its latency
    heartbeat_interval: Optional[int] = HEARTBEAT_INTERVAL
    grace_period: Optional[int] = GRACE_PERIOD
    outage_limit: float = OUTAGE_LIMIT  # seconds a worker waits for an unreachable database before it stops


def trial_sampler_seed(seed: int, trials_so_far: int) -> int:
    """The seed of the sampler that proposes a study's next trial.

    Mixed by numpy's SeedSequence, not added: with `seed + trials_so_far`, run `--seed 1` drew the
    very profiles of `--seed 0` one trial later, so seeds were not independent repetitions.
    """
    return int(np.random.SeedSequence([seed, trials_so_far]).generate_state(1)[0])


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, seed=seed, n_startup_trials=8)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        # Latency and accuracy are noisy measurements: the GP models a noise term, not an exact fit.
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8, deterministic_objective=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "evo":
        return EvoSampler(seed=seed)
    raise OptionError("sampler", f"{{sampler}} must be tpe, nsga2, gp, random or evo, not {name!r}")


def open_study(cfg: SearchConfig, storage: Any = None) -> optuna.Study:
    """Create, resume or join the study; refuse one made for another model, space, objective or device.

    `storage`: an already opened storage (search/storage.py `open_storage`), else opened from cfg."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or open_storage(cfg.storage, cfg.heartbeat_interval, cfg.grace_period)
    try:
        study = optuna.create_study(
            storage=storage, study_name=cfg.study_name, load_if_exists=True,
            directions=["minimize", "maximize"], sampler=make_sampler(cfg.sampler, cfg.seed),
        )
    except ValueError as exc:  # an existing study with other directions
        raise UserError(f"study {cfg.study_name!r} in {redact(cfg.storage)} is not a search study ({exc})") from None
    with ClaimLock(storage, cfg.study_name):  # two workers creating the study at once agree on one identity
        have = study.user_attrs.get("identity")
        if have is None:
            study.set_user_attr("identity", cfg.identity)
        if study.metric_names is None:  # optuna-dashboard and optuna.visualization label the axes with them
            with warnings.catch_warnings():  # "experimental" since optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(metric_names(cfg.fidelity)))
    if have is not None and have != cfg.identity:
        diff = sorted(k for k in set(have) | set(cfg.identity) if have.get(k) != cfg.identity.get(k))
        shown = "; ".join(f"{k}: study {_short(have.get(k))}, here {_short(cfg.identity.get(k))}" for k in diff[:3])
        raise UserError(
            f"study {cfg.study_name!r} in {redact(cfg.storage)} was made with other settings ({', '.join(diff)} differ: "
            f"{shown}); use another --out/--name or the same settings"
        )
    return study


def metric_names(fidelity: str) -> tuple[str, str]:
    """The optuna objective names: latency, and lm-eval accuracy (full) or the proxy score (else)."""
    return ("latency_ms", "lm_eval_accuracy" if fidelity == "full" else "proxy_score")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def finished_count(study: optuna.Study) -> int:
    """Trials counted against the budget (COMPLETE, or failed by the evaluation; not lost ones)."""
    return study_counts(study)["counted"]


SEED_FLAG = "seeds_enqueued"


def enqueue_seeds(study: optuna.Study, space: Space, lock: Optional[ClaimLock] = None) -> bool:
    """Uniform 1.00 and the paper's heuristic (1.03 on the first half), once per study even with many
    workers: enqueued under the claim lock by the first worker, which sets a study flag. WAITING
    trials are then popped atomically by the storage (one worker each). Returns True if enqueued here."""
    lock = lock or ClaimLock(study._storage, study.study_name)
    with lock:
        if study.user_attrs.get(SEED_FLAG) or any("seed" in t.user_attrs for t in study.get_trials(deepcopy=False)):
            return False
        for name, profile in space.seeds().items():
            profile = replace(profile, name=name)
            study.enqueue_trial(space.params_for(profile), user_attrs={"seed": name, SEED_PROFILE: profile.to_dict()})
        study.set_user_attr(SEED_FLAG, True)
    return True


def front_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials on the front of their objectives, differences inside noise being ties
    (search/pareto.py)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return []
    mask = front_mask([trial_measured(t) for t in done])
    return [t for t, keep in zip(done, mask) if keep]


def near_front(point: Measured, others: Sequence[FrozenTrial], margin: float) -> bool:
    """True unless some finished trial dominates `point` even after granting it `margin`."""
    granted = point.shifted(margin)
    return not any(dominates(trial_measured(t), granted) for t in others)


class Objective:
    def __init__(self, cfg: SearchConfig, evaluator: Evaluator, on_start: Optional[Callable[[], None]] = None) -> None:
        self.cfg = cfg
        self.ev = evaluator
        self.on_start = on_start  # called once the trial is claimed (releases the claim lock)
        self.current: Optional[int] = None  # storage id of the trial being evaluated

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        cfg = self.cfg
        self.current = trial._trial_id
        if self.on_start is not None:
            self.on_start()
        try:
            if cfg.worker:
                trial.set_user_attr("worker", cfg.worker)
            if cfg.device:
                trial.set_user_attr("device", cfg.device)
            profile = cfg.space.suggest(trial)
            profile = self.ev.resolve(seed_profile(trial.user_attrs) or profile)  # thresholds filled in
            trial.set_user_attr(PROFILE, profile.to_dict())
            ms, acc = self._evaluate(trial, profile)
        except KeyboardInterrupt:  # Ctrl-C: FAIL, not counted; its profile runs again later
            _requeue_interrupted(trial)
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            raise  # another worker failed this trial as lost (see run_study)
        except Exception as exc:  # recorded, then optuna marks the trial FAIL and the study goes on
            if is_storage_error(exc):
                raise  # the database, not the profile: run_study waits for it and re-runs the trial
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        return ms, acc

    def _evaluate(self, trial: optuna.Trial, profile: Profile) -> tuple[float, float]:
        cfg = self.cfg
        staged_latency = cfg.latency_fidelity == "staged"
        lat = _stage(self.ev.predicted_latency if staged_latency else self.ev.latency, profile)
        _record_latency(trial, lat)
        ms = float(lat["ms"])
        fid = {"latency": "model" if staged_latency else "measured"}
        if cfg.fidelity == "full":
            full = _stage(self.ev.full, profile)
            self._record_full(trial, full)
            fid["accuracy"] = "lm-eval"
            acc = float(full["accuracy"])
            acc_iv = (full.get("accuracy_ci_low"), full.get("accuracy_ci_high"))
        else:
            prox = _stage(self.ev.proxy, profile)
            for key, value in prox.items():
                trial.set_user_attr(f"proxy_{key}", value)
            acc = float(prox["score"])
            acc_iv = (prox.get("ci_low"), prox.get("ci_high"))
            fid["accuracy"] = "proxy"
            if cfg.fidelity == "staged" and self._promote(trial, Measured(ms, acc, lat.get("ci_low_ms"),
                                                                          lat.get("ci_high_ms"), *acc_iv)):
                self._record_full(trial, _stage(self.ev.full, profile))
                fid["accuracy_full"] = "lm-eval"
        if staged_latency and self._promote(trial, Measured(ms, acc, lat["ci_low_ms"], lat["ci_high_ms"], *acc_iv)):
            measured = _stage(self.ev.latency, profile)
            _record_latency(trial, measured)
            ms = float(measured["ms"])
            fid["latency"] = "measured"
        trial.set_user_attr("fidelity", fid)
        if not (math.isfinite(ms) and math.isfinite(acc)):
            raise ValueError(f"non-finite objective (latency {ms}, accuracy {acc})")
        return ms, acc

    @staticmethod
    def _record_full(trial: optuna.Trial, full: dict[str, Any]) -> None:
        """lm-eval's figures: `accuracy_full`, `accuracy_*` (interval, delta vs dense, `accuracy_items`),
        the rest as `full_*`."""
        trial.set_user_attr("accuracy_full", float(full["accuracy"]))
        for key, value in full.items():
            if key == "items":
                trial.set_user_attr("accuracy_items", value)
            elif key.startswith("accuracy_"):
                trial.set_user_attr(key, value)
            elif key != "accuracy":
                trial.set_user_attr(f"full_{key}", value)

    def _promote(self, trial: optuna.Trial, point: Measured) -> bool:
        """Whether a trial earns its next stage: a seed always; else when no finished trial dominates
        `point` even after granting it stage_margin of the second objective's range."""
        if "seed" in trial.user_attrs:
            return True
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            return True
        scores = [t.values[1] for t in done] + [point.accuracy]
        margin = self.cfg.stage_margin * (max(scores) - min(scores))
        return near_front(point, done, margin)


def _record_latency(trial: optuna.Trial, lat: dict[str, Any]) -> None:
    """A latency stage's figures as `latency_*` user attrs (a measurement replaces a prediction's;
    `latency_predicted_ms` stays)."""
    for key, value in lat.items():
        trial.set_user_attr(f"latency_{key}" if not key.startswith("latency") else key, value)


def _stage(evaluate: Callable[[Profile], dict[str, Any]], profile: Profile) -> dict[str, Any]:
    """One evaluation stage; a Ctrl-C that Python dropped inside it (see interrupts.py) ends the trial here."""
    out = evaluate(profile)
    check_interrupt()
    return out


def _requeue_interrupted(trial: optuna.Trial) -> None:
    try:
        trial.set_user_attr("lost", "interrupted")
        requeue_lost(trial.study, trial.study._storage.get_trial(trial._trial_id))
    except Exception:  # the storage may be gone too; the trial then stays for the heartbeat check
        pass


def run_study(study: optuna.Study, cfg: SearchConfig, evaluator: Evaluator,
              callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
              on_wait: Optional[Callable[[dict[str, int]], None]] = None,
              on_lost: Optional[Callable[[FrozenTrial], None]] = None,
              on_outage: Optional[Callable[[str], None]] = None) -> int:
    """Run trials until the study holds `budget` counted trials (or timeout). Returns trials run here.

    Before each trial the worker takes the study's claim lock, fails dead workers' trials, and claims
    a trial only if `counted + running < budget`; the lock is released as soon as the trial exists.
    When the whole budget is claimed but trials still run elsewhere, it waits for them (calling
    `on_wait` once with the counts), polling every 2 s at most. `on_lost` is called with a
    trial of this worker that another worker failed as lost meanwhile (its result is dropped).

    A database that goes away (a server restart) is waited for, with backoff, up to
    `cfg.outage_limit` seconds (`on_outage` gets one line when it goes and when it is back); this
    worker's trial whose result could not be stored is then failed as lost and its profile
    re-enqueued, so nothing is lost or counted twice. Past the limit: a one-line UserError.
    """
    lock = ClaimLock(study._storage, study.study_name)
    enqueue_seeds(study, cfg.space, lock)
    objective = Objective(cfg, evaluator, on_start=lock.release)
    stale_check = StaleCheck((cfg.grace_period or 2 * cfg.heartbeat_interval) if cfg.heartbeat_interval else None)
    poll = float(min(cfg.heartbeat_interval or 2, 2))
    t0 = time.monotonic()
    ran = 0
    waited = False
    while cfg.timeout is None or time.monotonic() - t0 < cfg.timeout:
        check_interrupt()
        objective.current = None
        try:
            lock.acquire()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            _ride_out(study, cfg, exc, None, on_outage)
            continue
        try:
            stale_check(study)
            counts = study_counts(study)
            if counts["counted"] >= cfg.budget:
                break
            if counts["counted"] + counts["running"] >= cfg.budget:
                lock.release()
                if not waited and on_wait is not None:
                    on_wait(counts)
                waited = True
                time.sleep(poll)
                continue
            # A sampler seeded by (seed, trials so far): reproducible for one worker, and workers that
            # share a --seed do not draw the same random startup profiles.
            n_trials = len(study.get_trials(deepcopy=False))
            study.sampler = make_sampler(cfg.sampler, trial_sampler_seed(cfg.seed, n_trials))
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=list(callbacks),
                               gc_after_trial=False)
            except (ValueError, RuntimeError) as exc:
                if is_storage_error(exc):
                    raise
                # This worker was so slow (no heartbeat for a grace period) that another one failed its
                # trial as lost and re-enqueued it; optuna then refuses our result. Go on.
                tid = objective.current
                lost = None if tid is None else study._storage.get_trial(tid)
                if lost is None or lost.state != TrialState.FAIL:
                    raise
                if on_lost is not None:
                    on_lost(lost)
            ran += 1
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            lock.release()
            _ride_out(study, cfg, exc, objective.current, on_outage)
        finally:
            lock.release()
    return ran


def _ride_out(study: optuna.Study, cfg: SearchConfig, exc: BaseException, trial_id: Optional[int],
              on_outage: Optional[Callable[[str], None]]) -> None:
    """Wait for the database to come back (backoff 1 s doubling to 15 s) for at most
    `cfg.outage_limit` seconds, then fail this worker's unfinished trial as lost and re-enqueue its
    profile (its result never reached the database). Past the limit: a one-line UserError (the
    trial is then left to the other workers' stale-heartbeat check)."""
    say = on_outage or (lambda msg: None)
    shown = redact(str(getattr(rdb_of(study._storage), "url", cfg.storage)))
    t0 = time.monotonic()
    say(f"storage {shown} unreachable ({storage_error_line(exc)}); waiting up to {cfg.outage_limit:g} s for it")
    delay = 1.0
    while not reachable(study._storage):
        waited = time.monotonic() - t0
        if waited >= cfg.outage_limit:
            raise UserError(f"storage {shown} unreachable for {waited:.0f} s (--storage-outage-limit "
                            f"{cfg.outage_limit:g}): {storage_error_line(exc)}; finished trials are kept there, "
                            "this worker's running trial is rerun by the others; rerun the same command to continue")
        check_interrupt()
        time.sleep(min(delay, max(cfg.outage_limit - waited, 0.1)))
        delay = min(2 * delay, 15.0)
    say(f"storage back after {time.monotonic() - t0:.0f} s")
    if trial_id is None:
        return
    rdb = rdb_of(study._storage)
    trial = rdb.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        return  # its result was stored (the failure came after), or another worker failed it already
    try:
        rdb.set_trial_user_attr(trial_id, "lost", "storage outage")
        if rdb.set_trial_state_values(trial_id, state=TrialState.FAIL):
            requeue_lost(study, rdb.get_trial(trial_id))
            say(f"trial {trial.number}: its result could not be stored; failed as lost, its profile re-enqueued")
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another worker's stale check was first
