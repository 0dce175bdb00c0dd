"""Many workers, one study: a real PostgreSQL server (conftest.py), worker processes, SIGKILL,
Ctrl-C, SQLite resume, one-line storage errors.

Budget accounting under test: COMPLETE trials and trials failed by the evaluation count; a trial
lost with its worker (SIGKILL, Ctrl-C) is FAIL, does not count, and its profile runs again once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.driver import SearchConfig, finished_count, open_study, run_study
from sparseinfer_dse.search.pareto import dominates
from sparseinfer_dse.search.spaces import make_space, parse_level_grid
from sparseinfer_dse.search.trial_measures import trial_measured
from sparseinfer_dse.search.trial_profile import trial_profile
from sparseinfer_dse.search.storage import is_lost, normalize_url, open_storage, study_counts

from pg_server import free_port  # tests/search is on sys.path (conftest.py)

CLI = [sys.executable, "-c", "from sparseinfer_dse.cli import main; main()"]
# The smallest settings `search` offers: 4 calibration sequences, 2 decoded tokens, 1 prompt, 1 round.
SMALL = ["--model", "demo", "--fidelity", "proxy", "--calibration-samples", "4", "--latency-tokens", "2",
         "--latency-prompts", "1", "--latency-repeats", "1", "--threads", "1", "--no-report", "--no-verify",
         "--heartbeat-interval", "1", "--grace-period", "4"]
SEEDS = {"uniform-1.00": [1.0, 1.0, 1.0, 1.0], "paper-1.03": [1.03, 1.03, 1.0, 1.0]}
WAIT_S = 900


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _worker(storage, name, budget, out, *extra):
    args = [*CLI, "search", *SMALL, "--storage", storage, "--name", name, "--budget", str(budget), "--out", str(out), *extra]
    # SIGINT back to its default in the child: a runner that starts us in the background (`cmd &` in a
    # script) leaves SIGINT ignored, Python then never raises KeyboardInterrupt, and Ctrl-C is untestable.
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _finish(proc, timeout=WAIT_S):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _load(url, name):
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


def _poll_study(url, name, timeout=WAIT_S):
    """The study once a worker has created it (one storage for all the polling: no connection leak)."""
    storage = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            storage = storage or open_storage(url, heartbeat_interval=None)
            return optuna.load_study(study_name=name, storage=storage)
        except (KeyError, UserError):  # no study yet; SQLite: no folder yet
            time.sleep(0.2)
    raise AssertionError(f"study {name} never appeared")


def _running_of(study, pid):
    """Trials that worker `pid` is evaluating (its profile chosen: `profile` recorded)."""
    return [t.number for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.RUNNING and f":{pid}:" in t.user_attrs.get("worker", "") and "profile" in t.user_attrs]


def _stop_mid_trial(proc, url, name, sig, min_complete=1, timeout=WAIT_S):
    """Send `sig` to worker `proc` while it is inside a trial (after it completed `min_complete` trials).

    The worker is frozen with SIGSTOP first, so the trial it runs is known exactly when the signal
    lands; if it froze between two trials it is resumed and we try again. Returns the trial number."""
    study = _poll_study(url, name, timeout)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            trials = study.get_trials(deepcopy=False)
            own = [t for t in trials if f":{proc.pid}:" in t.user_attrs.get("worker", "")]
            ready = sum(t.state == TrialState.COMPLETE for t in own) >= min_complete and _running_of(study, proc.pid)
        except Exception:  # SQLite busy with the worker's write
            ready = False
        if not ready:
            time.sleep(0.05)
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            running = _running_of(study, proc.pid)
        except Exception:  # SQLite locked by the frozen writer
            running = None
        if sig == signal.SIGKILL and running != []:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            running = _running_of(study, proc.pid)  # the lock died with it
            assert len(running) == 1, running
            return running[0]
        if running:
            os.kill(proc.pid, sig)
            os.kill(proc.pid, signal.SIGCONT)
            return running[0]
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"worker {proc.pid} never ran a trial")


def _brute_front(trials):
    """Non-dominated COMPLETE trials by the definition (search/pareto.py `dominates` on each trial's
    stored figures and intervals), checked pair by pair."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pts = [trial_measured(t) for t in done]
    return sorted(t.number for t, p in zip(done, pts) if not any(dominates(q, p) for q in pts if q is not p))


def _assert_seeds_once(trials):
    done = [t for t in trials if t.state == TrialState.COMPLETE and "seed" in t.user_attrs]
    assert Counter(t.user_attrs["seed"] for t in done) == Counter(list(SEEDS))
    for t in done:
        assert list(trial_profile(t.user_attrs).levels) == SEEDS[t.user_attrs["seed"]]


# ---- engine-free checks of the driver against the real server --------------------------------

FAKE_WORKER = textwrap.dedent('''
    import sys, time
    from sparseinfer_dse.search.driver import SearchConfig, open_study, run_study
    from sparseinfer_dse.search.spaces import make_space, parse_level_grid
    url, name, budget, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    class Ev:
        def resolve(self, p):
            return p

        def latency(self, a):
            time.sleep(0.3)
            return {"ms": 10 + 5 * sum(a.levels) / len(a.levels), "noise_ms": 0.01}
        def proxy(self, a):
            return {"score": -sum((1.1 - x) ** 2 for x in a.levels)}
        def full(self, a):
            raise AssertionError("no lm-eval here")
    space = make_space("per-layer", 4, parse_level_grid("0.9:1.1", 0.01))
    cfg = SearchConfig(budget, space, "proxy", "tpe", 0, None, name, url, identity={"model": "fake"},
                       worker=worker, heartbeat_interval=1, grace_period=3)
    print(run_study(open_study(cfg), cfg, Ev()))
''')


def test_concurrent_workers_exact_budget_and_seeds_once(postgres_server, tmp_path):
    """5 processes start at once on a fresh study (racing to create it and enqueue the seeds):
    exactly `budget` trials, seeds once, trials spread over the workers."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    url = postgres_server.url()
    procs = [subprocess.Popen([sys.executable, str(script), url, "race", "23", f"w{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(5)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    assert sum(int(r[0].split()[-1]) for r in results) == 23  # trials run, over all workers
    trials = _load(url, "race").get_trials()
    assert len(trials) == 23 and all(t.state == TrialState.COMPLETE for t in trials)
    _assert_seeds_once(trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2


def test_lost_trials_are_failed_requeued_and_not_counted(tmp_path):
    """A dead worker's trial (stale heartbeat), one that never got a heartbeat, and a Ctrl-C'd one:
    each FAIL, not counted, its profile re-run once; the budget is still met exactly."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    space = make_space("per-layer", 4, parse_level_grid("0.9:1.1", 0.01))

    class Ev:
        interrupt_at = None
        calls = 0

        def resolve(self, p):
            return p


        def latency(self, a):
            self.calls += 1
            if self.calls == self.interrupt_at:
                raise KeyboardInterrupt
            return {"ms": 10 + 5 * sum(a.levels) / len(a.levels), "noise_ms": 0.01}

        def proxy(self, a):
            return {"score": -sum((1.1 - x) ** 2 for x in a.levels)}

    cfg = SearchConfig(6, space, "proxy", "tpe", 0, None, "lost", url, identity={"model": "fake"}, worker="w",
                       heartbeat_interval=1, grace_period=2)
    study = open_study(cfg)
    ev = Ev()
    ev.interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        run_study(study, cfg, ev)
    interrupted = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and interrupted[0].user_attrs["lost"] == "interrupted" and is_lost(interrupted[0])
    # a dead worker: a running trial with an old heartbeat, and one that died before its first heartbeat
    rdb = study._storage
    stale_id = rdb.create_new_trial(study._study_id)
    rdb.set_trial_param(stale_id, "a000", 1.05, FloatDistribution(0.9, 1.1, step=0.01))
    rdb.record_heartbeat(stale_id)
    orphan_id = rdb.create_new_trial(study._study_id)
    stale, orphan = rdb.get_trial(stale_id), rdb.get_trial(orphan_id)
    time.sleep(2.5)
    ev.interrupt_at = None
    run_study(study, cfg, ev)
    trials = study.get_trials()
    counts = study_counts(study)
    assert counts["counted"] == 6 and counts["running"] == 0 and counts["lost"] == 3
    lost = [t.number for t in trials if is_lost(t)]
    assert sorted(lost) == sorted([interrupted[0].number, stale.number, orphan.number])
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert set(retries) == set(lost)
    assert retries[stale.number].params["a000"] == 1.05
    assert retries[interrupted[0].number].params == interrupted[0].params
    assert all(t.state == TrialState.COMPLETE for t in trials if not is_lost(t))
    _assert_seeds_once(trials)


def test_slow_worker_whose_trial_was_failed_by_another_goes_on(tmp_path):
    """A live worker so slow that another failed its trial as lost: its late result is dropped, the
    re-enqueued copy runs, the worker goes on, and the budget is still met exactly."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    space = make_space("per-layer", 4, parse_level_grid("0.9:1.1", 0.01))
    cfg = SearchConfig(5, space, "proxy", "tpe", 0, None, "slow", url, identity={"model": "fake"}, worker="w",
                       heartbeat_interval=1, grace_period=2)
    study = open_study(cfg)
    lost = []

    class Ev:
        calls = 0

        def resolve(self, p):
            return p


        def latency(self, a):
            self.calls += 1
            if self.calls == 3:  # what another worker's stale check does to this trial meanwhile
                from sparseinfer_dse.search.storage import requeue_lost

                (tid,) = [t._trial_id for t in study.get_trials(states=(TrialState.RUNNING,))]
                study._storage.set_trial_state_values(tid, state=TrialState.FAIL)
                requeue_lost(study, study._storage.get_trial(tid))
            return {"ms": 10 + 5 * sum(a.levels) / len(a.levels), "noise_ms": 0.01}

        def proxy(self, a):
            return {"score": -sum((1.1 - x) ** 2 for x in a.levels)}

    run_study(study, cfg, Ev(), on_lost=lost.append)
    trials = study.get_trials()
    assert [t.number for t in lost] == [2] and is_lost(trials[2])
    assert study_counts(study)["counted"] == 5 and len(trials) == 6
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == trials[2].params


def test_worker_with_another_device_is_refused(tmp_path):
    space = make_space("per-layer", 4, parse_level_grid("0.9:1.1", 0.01))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    mk = lambda dev: SearchConfig(2, space, "proxy", "tpe", 0, None, "dev", url,  # noqa: E731
                                  identity={"model": "fake", "device_kind": dev})
    open_study(mk("cuda:NVIDIA H100 80GB HBM3"))
    with pytest.raises(UserError) as err:
        open_study(mk("cuda:NVIDIA A100-SXM4-40GB"))
    msg = str(err.value)
    assert "device_kind differ" in msg and "A100" in msg and "\n" not in msg


# ---- real workers on the demo model --------------------------------------------------------------

def test_three_workers_one_study(postgres_server, tmp_path):
    url, name = postgres_server.url(), "three"
    procs = [_worker(url, name, 12, tmp_path / f"w{i}") for i in range(3)]
    results = [_finish(p) for p in procs]
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    study = _load(url, name)
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert finished_count(study) == 12
    _assert_seeds_once(trials)
    pids = {str(p.pid) for p in procs}
    workers = {t.user_attrs["worker"] for t in trials}
    assert all(w.split(":")[-2] in pids for w in workers) and len(workers) >= 2
    assert all(t.user_attrs["device"].startswith("cpu:") for t in trials)
    brute = _brute_front(trials)
    for i in range(3):  # every worker waited for the end, so every output folder has the final front
        assert sorted(pd.read_csv(tmp_path / f"w{i}" / "pareto.csv").trial) == brute
    res = subprocess.run([*CLI, "status", "--storage", url, "--name", name, "--json"], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert sorted(r["trial"] for r in info["front"]) == brute
    assert info["totals"]["complete"] == 12 and info["totals"]["running"] == 0
    assert sum(r["complete"] for r in info["workers"].values()) == 12 and set(info["workers"]) == workers
    assert "dse-secret" not in res.stdout
    text = subprocess.run([*CLI, "status", "--storage", url, "--name", name], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert text.returncode == 0 and "Pareto front" in text.stdout and all(w in text.stdout for w in workers)


def test_sigkilled_worker_loses_nothing(postgres_server, tmp_path):
    url, name = postgres_server.url(), "killed"
    victim = _worker(url, name, 12, tmp_path / "victim")
    others = [_worker(url, name, 12, tmp_path / f"w{i}") for i in range(2)]
    killed = _stop_mid_trial(victim, url, name, signal.SIGKILL)
    for rc, out, err in map(_finish, others):
        assert rc == 0, err[-3000:]
    trials = _load(url, name).get_trials()
    by_number = {t.number: t for t in trials}
    k = by_number[killed]
    assert k.state == TrialState.FAIL and is_lost(k) and f":{victim.pid}:" in k.user_attrs["worker"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == k.params
    assert [t.number for t in trials if t.state != TrialState.COMPLETE] == [killed]  # nothing else lost
    assert len(trials) == 13 and sum(t.state == TrialState.COMPLETE for t in trials) == 12
    assert any(f":{victim.pid}:" in t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE)
    _assert_seeds_once(trials)


def test_sqlite_worker_killed_then_resumed(tmp_path):
    out, name = tmp_path / "run", "solo"
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    proc = _worker(url, name, 6, out)
    killed = _stop_mid_trial(proc, url, name, signal.SIGKILL)
    rc, stdout, err = _finish(_worker(url, name, 6, out))  # the same command again resumes
    assert rc == 0, err[-3000:]
    trials = _load(url, name).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert [t.number for t in trials if t.state != TrialState.COMPLETE] == [killed]
    assert is_lost(trials[killed]) and any(t.user_attrs.get("retry_of") == killed for t in trials)
    _assert_seeds_once(trials)
    assert len(pd.read_csv(out / "trials.csv")) == 7


def test_ctrl_c_ends_cleanly_and_resumes(tmp_path):
    out, name = tmp_path / "run", "ctrlc"
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    proc = _worker(url, name, 4, out)
    interrupted = _stop_mid_trial(proc, url, name, signal.SIGINT, min_complete=0)
    rc, stdout, err = _finish(proc)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and "interrupted:" in stdout
    assert (out / "trials.csv").is_file()
    t = _load(url, name).get_trials()[interrupted]
    assert t.state == TrialState.FAIL and t.user_attrs.get("lost") == "interrupted"
    rc, stdout, err = _finish(_worker(url, name, 4, out))
    assert rc == 0, err[-3000:]
    trials = _load(url, name).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert any(t.user_attrs.get("retry_of") == interrupted and t.state == TrialState.COMPLETE for t in trials)


# ---- one-line storage errors ---------------------------------------------------------------------

@pytest.mark.parametrize("case,expect", [
    ("unreachable", "Connection refused"),
    ("password", "password authentication failed"),
    ("database", 'database "no_such_db" does not exist'),
])
def test_storage_errors_are_one_line(postgres_server, tmp_path, case, expect):
    url = {"unreachable": postgres_server.url(port=free_port()),
           "password": postgres_server.url(password="wrong"),
           "database": postgres_server.url(db="no_such_db")}[case]
    for cmd in (["search", *SMALL, "--budget", "1", "--out", str(tmp_path / "o")], ["status"]):
        res = subprocess.run([*CLI, *cmd, "--storage", url, "--name", "x"], capture_output=True, text=True,
                             env=_env(), timeout=300)
        assert res.returncode == 2, res.stderr[-2000:]
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], res.stderr[-2000:]
        assert "wrong" not in lines[0] and "dse-secret" not in lines[0]  # the password is never printed


def test_missing_driver_and_missing_study_are_one_line(postgres_server):
    code = "import sys; sys.modules['psycopg'] = None; from sparseinfer_dse.cli import main; main()"
    res = subprocess.run([sys.executable, "-c", code, "status", "--storage", postgres_server.url(), "--name", "x"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "pip install 'psycopg[binary]'" in res.stderr
    res = subprocess.run([*CLI, "status", "--storage", postgres_server.url(), "--name", "no-such-study"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no study 'no-such-study'" in res.stderr


def test_bare_postgresql_url_uses_psycopg3():
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
