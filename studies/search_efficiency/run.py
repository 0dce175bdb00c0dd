"""Benchmark of search strategies: runs `sparseinfer-dse search` once per (target, sampler, latency
fidelity, seed) and then `analyze.py` on what was run.

Every run is an ordinary search in its own folder (`runs/<target>/<sampler>-<latency>-s<seed>/`,
with its `study.db`), so an interrupted benchmark continues where it stopped when the same command
is run again: a finished run is skipped (its budget is reached), an unfinished one is resumed by
the search itself. `run.json` in each folder records every invocation's start and end (epoch
seconds), from which the analysis takes the run's set-up time (model load, dense reference,
latency model when it is not cached) before its first trial.

    python studies/search_efficiency/run.py --target demo --samplers random,tpe,gp,evo \
        --latency measured,staged --seeds 0,1,2 --budget 30

Runs are sequential on purpose: every trial times decoding on this machine, and two searches at
once would time each other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# target -> (study TOML, flags that make its trials the benchmark's: accuracy by the KL proxy only)
TARGETS = {
    "demo": (ROOT / "studies" / "demo.toml", ["--fidelity", "proxy", "--proxy-metric", "kl"]),
    "smollm2": (ROOT / "studies" / "smollm2-wisparse.toml", ["--fidelity", "proxy", "--proxy-metric", "kl"]),
}


def run_dir(out: Path, target: str, sampler: str, latency: str, seed: int) -> Path:
    return out / target / f"{sampler}-{latency}-s{seed}"


def command(target: str, sampler: str, latency: str, seed: int, budget: int, folder: Path, extra: list[str]) -> list[str]:
    toml, flags = TARGETS[target]
    return ["sparseinfer-dse", "search", "--study", str(toml), *flags, "--sampler", sampler, "--seed", str(seed),
            "--budget", str(budget), "--latency-fidelity", latency, "--name", f"{target}-{folder.name}",
            "--out", str(folder), "--no-verify", "--no-report", *extra]


def finished(folder: Path, budget: int) -> bool:
    info = folder / "run.json"
    if not info.exists():
        return False
    runs = json.loads(info.read_text()).get("invocations", [])
    return any(r.get("rc") == 0 and r.get("budget", 0) >= budget for r in runs)


def run_one(target: str, sampler: str, latency: str, seed: int, budget: int, out: Path, extra: list[str]) -> int:
    folder = run_dir(out, target, sampler, latency, seed)
    if finished(folder, budget):
        print(f"[skip] {folder} (budget {budget} reached)", flush=True)
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    info_path = folder / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {
        "target": target, "sampler": sampler, "latency": latency, "seed": seed, "invocations": []}
    cmd = command(target, sampler, latency, seed, budget, folder, extra)
    entry = {"start": time.time(), "budget": budget, "command": " ".join(cmd)}
    print(f"[run] {folder}", flush=True)
    with open(folder / "search.log", "a") as log:
        try:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        except KeyboardInterrupt:
            rc = 130
    entry.update(end=time.time(), rc=rc)
    info["invocations"].append(entry)
    tmp = info_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(info_path)
    print(f"[done] {folder.name}: rc {rc}, {entry['end'] - entry['start']:.0f} s", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=sorted(TARGETS), required=True)
    p.add_argument("--samplers", default="random,tpe,gp,evo")
    p.add_argument("--latency", default="measured,staged", help="latency fidelities: measured, staged or both")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=30)
    p.add_argument("--out", type=Path, default=HERE / "runs")
    p.add_argument("--order", choices=["seed-major", "config-major"], default="seed-major",
                   help="seed-major runs every configuration of seed 0 before seed 1, so a cut-short benchmark "
                        "still has every strategy at equal seeds")
    p.add_argument("extra", nargs="*", help="further `search` flags after --, e.g. -- --calibration-samples 8")
    a = p.parse_args(argv)
    samplers, latencies = a.samplers.split(","), a.latency.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    configs = [(s, lat) for s in samplers for lat in latencies]
    order = ([(c, k) for k in seeds for c in configs] if a.order == "seed-major" else
             [(c, k) for c in configs for k in seeds])
    for (sampler, latency), seed in order:
        rc = run_one(a.target, sampler, latency, seed, a.budget, a.out, a.extra)
        if rc == 130:
            print("interrupted: run the same command again to continue", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
