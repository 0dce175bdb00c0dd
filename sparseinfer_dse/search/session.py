"""One worker's search session: load and sparsify the model, open or join the study, run trials with
a progress bar, then write the outputs and the report. `run_search(options)` is what `search` runs.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Optional

from sparseinfer_dse import interrupts
from sparseinfer_dse.eval.baseline_cache import task_data_digest
from sparseinfer_dse.eval.harness import DEFAULT_SEED, build_task_manager, require_generate_until
from sparseinfer_dse.machine import device_name, thread_counts
from sparseinfer_dse.search.driver import SearchConfig, finished_count, front_trials, open_study, run_study
from sparseinfer_dse.search.evaluator import SearchEvaluator
from sparseinfer_dse.search.latency_model_store import latency_model
from sparseinfer_dse.search.model_setup import load_search_model
from sparseinfer_dse.search.options import SearchOptions
from sparseinfer_dse.search.outputs import write_outputs
from sparseinfer_dse.search.report import write_report
from sparseinfer_dse.search.spaces import make_space
from sparseinfer_dse.search.storage import open_storage, raise_if_storage_lost, redact
from sparseinfer_dse.search.verify import VerifyOptions, run_verify

Say = Callable[..., None]  # say(message, err=False): the front end's printer


@dataclass
class SearchOutcome:
    """How the session ended: `interrupted` (Ctrl-C / SIGTERM during trials), `writing_interrupted`
    (during the outputs: the study is whole, the files may be the previous ones)."""

    out: Path
    summary: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    writing_interrupted: bool = False


def _print(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout)


def run_search(opts: SearchOptions, say: Say = _print) -> SearchOutcome:
    """Run this worker's share of the study `opts` describes; returns how it ended."""
    from tqdm.auto import tqdm

    fidelity, budget = opts.effective_fidelity, opts.budget
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    storage = opts.storage_url
    hb = opts.heartbeat_interval, opts.grace_period
    rdb = open_storage(storage, *hb)  # before the model load: a wrong URL fails at once, in one line
    if opts.task_list:  # a log-likelihood task would score every profile exactly as dense: refuse it now
        require_generate_until(list(opts.task_list), build_task_manager(list(opts.task_list), opts.data_dir))
    sm = load_search_model(opts, say=lambda m: say(m, err=True))
    lm, handle, method = sm.lm, sm.handle, sm.method
    space = make_space(opts.space, len(lm.mlps), opts.grid_for(method))
    if handle.notice and (method == "sparseinfer") != lm.activation.is_sparse:
        say(f"note: {handle.notice}", err=True)
    identity = opts.study_identity(config_hash=lm.identity.config_hash, dtype=str(lm.dtype), space=space.describe(),
                                   method=method, thresholds=sm.thresholds_key,
                                   device_kind=device_kind(lm.device), backend=handle.backend,
                                   decode_activation=lm.spec.decode_activation,
                                   task_data={t: task_data_digest(t, opts.data_dir) for t in opts.task_list},
                                   threads=thread_counts()["torch"] if lm.device.type == "cpu" else None)
    worker = f"{socket.gethostname()}:{os.getpid()}:{lm.device}"
    cfg = SearchConfig(budget, space, fidelity, opts.sampler, opts.seed, opts.timeout, opts.name, storage,
                       identity=identity, worker=worker, device=identity["device_kind"],
                       heartbeat_interval=hb[0], grace_period=hb[1], outage_limit=opts.storage_outage_limit,
                       latency_fidelity=opts.latency_fidelity)
    study = open_study(cfg, rdb)
    optuna_quiet()
    study.set_user_attr("budget", budget)  # shown by `status` (the last worker's --budget)
    study.set_user_attr("grace_period", hb[1])  # `status` counts a trial lost after it, as the workers do
    say(f"preparing: latency workload and proxy reference for {opts.model} ({lm.device}, backend {handle.backend})")
    ev = SearchEvaluator(lm, handle, opts, progress=False)
    dense = study.user_attrs.get("dense")
    if dense is None:  # the first worker measures it; a worker racing it measures too, harmlessly
        dense = ev.dense()
        dense["worker"] = worker
        if study.user_attrs.get("dense") is None:
            study.set_user_attr("dense", dense)
    ev.reference_ms, ev.dense_items = dense["ms"], dense.get("items")
    say(f"dense reference: {dense['ms']:.3f} ms/token"
        + (f", accuracy {dense['accuracy_full']:.1f}" if "accuracy_full" in dense else ""))
    if opts.latency_fidelity == "staged":  # every worker reads the same cached model (the first measures it)
        ev.latency_model, _ = latency_model(sm, opts, ev.workload, say=lambda m: say(m, err=True))

    bar = tqdm(total=budget, initial=min(finished_count(study), budget), unit="trial", desc="search")
    objective = "acc" if fidelity == "full" else "proxy"  # what the trials' second value is (staged: the proxy)

    def on_trial(st, trial) -> None:
        bar.n = min(finished_count(st), budget)
        bar.refresh()
        if trial.state.name == "FAIL" and "fail_reason" in trial.user_attrs:
            bar.write(f"trial {trial.number} failed: {trial.user_attrs['fail_reason']}", file=sys.stderr)
        trials = st.get_trials(deepcopy=False)
        front = front_trials(trials)
        if front:
            good = [t for t in trials if t.state.name == "COMPLETE"]
            best = min(good, key=lambda t: (-t.values[1], t.values[0]))
            fastest = min(good, key=lambda t: t.values[0])
            bar.set_postfix_str(f"{objective}-front={len(front)} fastest={fastest.values[0]:.2f}ms "
                                f"best-{objective}={best.values[1]:.4g}@{best.values[0]:.2f}ms")

    def on_wait(counts) -> None:
        bar.write(f"budget fully claimed: waiting for {counts['running']} trial(s) still running on other workers "
                  f"(a dead worker's trial is re-run after --grace-period {hb[1]} s; Ctrl-C leaves them to finish)",
                  file=sys.stderr)

    def on_lost(trial) -> None:
        bar.write(f"trial {trial.number} was failed by another worker (no heartbeat from here for "
                  f"--grace-period {hb[1]} s: this machine is overloaded?); its profile is re-run", file=sys.stderr)

    meta = {
        "model": opts.model, "identity": lm.identity.to_dict(), "device": str(lm.device), "backend": handle.backend,
        "method": method, "thresholds": sm.thresholds_key,
        "dtype": str(lm.dtype), "fidelity": fidelity, "accuracy_label": ev.accuracy_label, "dense": dense,
        "space": space.describe(), "sampler": opts.sampler, "budget": budget, "storage": redact(storage),
        "study_name": opts.name, "versions": versions(), "command": redacted_command(storage),
        "decode_activation": lm.spec.decode_activation, "worker": worker,
        "measurement": opts.measurement(backend=handle.backend, device=str(lm.device),
                                        dtype=str(lm.dtype).replace("torch.", ""), seed=DEFAULT_SEED),
        "options": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in opts.to_dict().items()},
                    "storage": redact(opts.storage) if opts.storage else None},
    }
    outcome = SearchOutcome(out)
    t0 = time.perf_counter()
    with interrupts.caught():  # Ctrl-C / SIGTERM: the trial FAILs and is re-queued, outputs written, exit 130
        try:
            run_study(study, cfg, ev, callbacks=[on_trial], on_wait=on_wait, on_lost=on_lost,
                      on_outage=lambda msg: bar.write(msg, file=sys.stderr))
        except KeyboardInterrupt:
            outcome.interrupted = True
        except Exception as exc:
            raise_if_storage_lost(exc, storage)
            raise
        finally:
            try:
                bar.n = min(finished_count(study), budget)  # other workers' trials too
                bar.refresh()
            except Exception:
                pass
            bar.close()
        meta["wall_s_last_run"] = round(time.perf_counter() - t0, 1)
        try:
            outcome.summary = write_outputs(study, out, fidelity, lm.identity, meta)
            if opts.verify and not outcome.interrupted and finished_count(study) >= budget:
                say("verifying the front: the front, the seeds and dense measured again, interleaved")
                del ev, handle, lm  # verification loads its own copy
                run_verify(VerifyOptions(out, storage=opts.storage, report=False), say=say)
            if opts.report:
                write_report(out)
        except KeyboardInterrupt:  # each file is whole (atomic.py); the study itself is all in the storage
            outcome.writing_interrupted = True
            return outcome
        outcome.interrupted = outcome.interrupted or interrupts.requested()  # one Python could not raise
    return outcome


def device_kind(device: Any) -> str:
    """What must match for latencies to be comparable across workers: device type and model."""
    return f"{device.type}:{device_name(device)}"


def optuna_quiet() -> None:
    """Failures are printed by the search itself, in one line (optuna would add a traceback)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def redacted_command(storage: str, argv: Optional[list[str]] = None) -> str:
    """The command line that ran (for study.json), with the storage password hidden."""
    args = [redact(a) if a == storage else a for a in (sys.argv[1:] if argv is None else argv)]
    return " ".join(["sparseinfer-dse", *args])


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("sparseinfer-dse", "torch", "transformers", "lm_eval", "optuna", "numba", "numba-cuda"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
