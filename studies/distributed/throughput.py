"""Throughput of 1, 2 and 3 search workers sharing one PostgreSQL study on this machine.

Each configuration runs a fresh study on a throwaway PostgreSQL server (tests/search/pg_server.py)
with `--model demo --fidelity proxy` and a budget of TRIALS_PER_WORKER x workers, all workers started
together with the same command. Reported per configuration:

- steady trials/min: finished trials / (last trial end - first trial start), from the trials' own
  timestamps (worker start-up, model load and the dense reference are excluded);
- end-to-end trials/min: finished trials / wall time from launching the workers to the last exit;
- the mean trial duration (how much each trial slows down when workers share the cores), and the
  median dense and sparse ms/token measured in the trials (how much sharing distorts the latency
  objective itself).

    python studies/distributed/throughput.py [--configs 1:1,2:1,3:1] [--trials-per-worker 12]

(`--configs` is a list of WORKERS:THREADS, THREADS being each worker's --threads.)

Writes studies/distributed/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "search"))
from pg_server import pg_bindir, throwaway_server  # noqa: E402

from sparseinfer_dse.search.storage import open_storage  # noqa: E402

CLI = [sys.executable, "-c", "from sparseinfer_dse.cli import main; main()"]


def run_config(url: str, n: int, per_worker: int, threads: int, extra: list[str], out: Path) -> dict:
    name = f"tp-{n}w-{threads}t"
    budget = per_worker * n
    args = ["search", "--model", "demo", "--fidelity", "proxy", "--no-report", "--storage", url, "--name", name,
            "--budget", str(budget), "--threads", str(threads), *extra]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*CLI, *args, "--out", str(out / name / f"w{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(n)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    for p, (o, e) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"worker failed ({p.returncode}): {e[-3000:]}")
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))
    done = [t for t in study.get_trials() if t.state.is_finished()]
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    steady_s = (last - first).total_seconds()
    durations = [t.duration.total_seconds() for t in done]
    per_worker_counts = Counter(t.user_attrs.get("worker", "?") for t in done)
    return {
        "workers": n, "threads_per_worker": threads, "budget": budget, "finished": len(done),
        "states": sorted({t.state.name for t in done}),
        "steady_trials_per_min": round(60 * len(done) / steady_s, 2),
        "end_to_end_trials_per_min": round(60 * len(done) / wall, 2),
        "wall_s": round(wall, 1), "steady_s": round(steady_s, 1),
        "mean_trial_s": round(statistics.mean(durations), 2), "median_trial_s": round(statistics.median(durations), 2),
        "trials_per_worker": sorted(per_worker_counts.values(), reverse=True),
        # what the search measures while workers share the machine: the dense decode step in each trial
        "median_dense_ms_per_token": round(statistics.median(t.user_attrs["latency_dense_ms"] for t in done), 3),
        "median_sparse_ms_per_token": round(statistics.median(t.values[0] for t in done), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="1:1,2:1,3:1", help="WORKERS:THREADS,... (THREADS: each worker's --threads)")
    ap.add_argument("--trials-per-worker", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("/tmp/sidse-throughput"))
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("throughput.json"))
    ap.add_argument("extra", nargs="*", help="more search options (after --)")
    a = ap.parse_args()
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql")
    results = []
    with throwaway_server(bindir) as server:
        for cfg in a.configs.split(","):
            n, threads = (int(x) for x in cfg.split(":"))
            r = run_config(server.url(), n, a.trials_per_worker, threads, a.extra, a.out)
            print(json.dumps(r), flush=True)
            results.append(r)
    base = next((r for r in results if r["workers"] == 1 and r["threads_per_worker"] == 1), results[0])
    for r in results:
        r["speedup_vs_1_worker_1_thread"] = round(r["steady_trials_per_min"] / base["steady_trials_per_min"], 2)
    report = {
        "what": "search throughput of N workers on one PostgreSQL study, demo model, proxy fidelity, default "
                "latency/proxy settings, all workers on this machine",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "command": "python " + " ".join(sys.argv),
        "results": results,
    }
    a.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
