"""Chaos on a shared study (real PostgreSQL on loopback): workers SIGKILLed and restarted at random,
the database server restarted mid-study. The study must reach exactly its budget by itself, each
seed complete once, nothing left RUNNING, every worker exiting 0; and a database gone for longer
than --storage-outage-limit ends a worker with one line and exit code 2, the study intact."""

from __future__ import annotations

import json
import random
import time

import pytest
from optuna.trial import TrialState

from test_distributed import _assert_seeds_once, _finish, _load, _poll_study, _worker  # tests/search is on sys.path
from sparseinfer_dse.search.driver import finished_count
from sparseinfer_dse.search.storage import is_lost

BUDGET = 45
FAST_HB = ["--heartbeat-interval", "1", "--grace-period", "4"]


def _alive(procs):
    return [i for i, p in enumerate(procs) if p.poll() is None]


def test_kills_and_a_server_restart_leave_an_exact_study(postgres_server, tmp_path):
    url, name = postgres_server.url(), "chaos"
    rng = random.Random(7)
    out = [tmp_path / f"w{i}" for i in range(3)]
    procs = [_worker(url, name, BUDGET, out[i]) for i in range(3)]
    _poll_study(url, name)
    t0 = time.monotonic()
    kills, restarted_server, last_spawn = 0, False, 0.0
    outputs: list[tuple[int, str, str]] = []
    kill_at = [BUDGET // 3, BUDGET // 2, (3 * BUDGET) // 4]  # finished trials at which a random worker is SIGKILLed
    try:
        while time.monotonic() - t0 < 600:
            if not _alive(procs):
                break
            time.sleep(1.0)
            done = finished_count(_load(url, name))
            if done >= BUDGET:
                continue  # let the workers finish
            # a worker started while the server is down stops at once (one line: "cannot open storage");
            # its scheduler would start it again: here the restart waits until the new workers are in
            if not restarted_server and done >= 5 and time.monotonic() - last_spawn > 12:
                postgres_server.stop()  # `pg_ctl stop -m fast`: every connection cut
                time.sleep(5.0)
                postgres_server.start()
                restarted_server = True
                continue
            alive = _alive(procs)
            if restarted_server and kill_at and done >= kill_at[0] and len(alive) == 3:
                kill_at.pop(0)
                i = rng.choice(alive)
                procs[i].kill()
                outputs.append(_finish(procs[i]))
                kills += 1
                procs[i] = _worker(url, name, BUDGET, out[i])  # restarted, as a scheduler would
                last_spawn = time.monotonic()
        results = [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    assert restarted_server and kills >= 2, (restarted_server, kills)
    study = _load(url, name)
    trials = study.get_trials()
    assert finished_count(study) == BUDGET
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    _assert_seeds_once(trials)
    lost = [t for t in trials if is_lost(t)]
    requeued = [t for t in trials if "retry_of" in t.user_attrs]
    assert {t.user_attrs["retry_of"] for t in requeued} <= {t.number for t in lost}
    stderr = "".join(err for _, _, err in results)
    figures = {"kills": kills, "server_restart": "5 s", "complete": sum(t.state == TrialState.COMPLETE for t in trials),
               "lost": len(lost), "requeued": len(requeued), "wall_s": round(time.monotonic() - t0, 1),
               "outage_notes": [ln for ln in stderr.splitlines() if "storage" in ln][:6]}
    (tmp_path / "chaos.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


def test_an_outage_longer_than_the_limit_stops_a_worker_in_one_line(postgres_server, tmp_path):
    url, name = postgres_server.url(), "outage"
    proc = _worker(url, name, 12, tmp_path / "w", "--storage-outage-limit", "4")
    study = _poll_study(url, name)
    t0 = time.monotonic()
    while finished_count(study) < 3 and time.monotonic() - t0 < 300:
        assert proc.poll() is None, _finish(proc)[2][-3000:]
        time.sleep(0.5)
    postgres_server.stop()
    try:
        rc, _, err = _finish(proc, timeout=300)
    finally:
        postgres_server.start()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "unreachable" in lines[0] and "dse-secret" not in err and "***" in lines[0]
    # the same command again finishes the study: nothing lost, nothing counted twice
    rc, _, err = _finish(_worker(url, name, 12, tmp_path / "w"))
    assert rc == 0, err[-3000:]
    study = _load(url, name)
    assert finished_count(study) == 12
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    _assert_seeds_once(study.get_trials())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # a trial asked for by hand, not by optimize
def test_status_counts_a_silent_running_trial_as_lost(postgres_server):
    """Before any worker has reaped it, a RUNNING trial with a heartbeat older than the grace period
    is shown as lost, with its age."""
    import optuna

    from sparseinfer_dse.cli.status import render
    from sparseinfer_dse.search.status import study_status
    from sparseinfer_dse.search.storage import open_storage

    url, name = postgres_server.url(), "silent"
    storage = open_storage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name=name, directions=["minimize", "maximize"])
    trial = study.ask()
    trial.set_user_attr("worker", "gone:1:cpu")
    storage.record_heartbeat(trial._trial_id)
    fresh = study_status(url, name, grace_period=2)
    assert fresh["totals"]["running"] == 1 and not fresh["running"][0]["lost"]
    time.sleep(3.2)
    info = study_status(url, name, grace_period=2)
    assert info["totals"]["running"] == 0 and info["totals"]["lost"] == 1
    assert info["running"][0]["lost"] and info["running"][0]["heartbeat_age_s"] > 2
    assert info["workers"]["gone:1:cpu"]["lost"] == 1 and "lost: trial 0 on gone:1:cpu" in render(info)
