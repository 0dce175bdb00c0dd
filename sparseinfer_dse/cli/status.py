"""`sparseinfer-dse status`: how a (possibly distributed) search stands: trials per worker, the front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sparseinfer_dse.cli.options import JsonFlag
from sparseinfer_dse.errors import UserError

STATES = {"COMPLETE": "complete", "RUNNING": "running", "FAIL": "failed", "WAITING": "waiting", "PRUNED": "pruned"}


def status_command(
    name: Annotated[str, typer.Option(help="Study name (the search's --name).")] = "demo",
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default: the SQLite file of studies/runs/<name>).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Trials complete, running, failed and waiting per worker, and the current Pareto front.

    Read-only: it never changes the study (a dead worker's trial is failed by the workers).
    """
    info = study_status(storage or _default_storage(name), name)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(render(info))


def _default_storage(name: str) -> str:
    db = Path("studies") / "runs" / name / "study.db"
    if not db.is_file():
        raise UserError(f"no --storage given and {db} does not exist; pass the search's --storage URL")
    return f"sqlite:///{db.resolve()}"


def study_status(url: str, name: str) -> dict[str, Any]:
    import optuna

    from sparseinfer_dse.search.outputs import accuracy_column, pareto_frame, trials_frame
    from sparseinfer_dse.search.storage import heartbeat_ages, is_lost, open_storage, redact, study_counts

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rdb = open_storage(url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        names = sorted(optuna.get_all_study_names(rdb))
        raise UserError(f"no study {name!r} in {redact(url)} (studies there: {', '.join(names) or 'none'})") from None
    identity = study.user_attrs.get("identity") or {}
    fidelity = identity.get("fidelity", "proxy")
    trials = study.get_trials(deepcopy=False)
    workers: dict[str, dict[str, Any]] = {}
    for t in trials:
        w = t.user_attrs.get("worker") or ("(queue)" if t.state.name == "WAITING" else "(unknown)")
        row = workers.setdefault(w, {"complete": 0, "running": 0, "failed": 0, "lost": 0, "waiting": 0,
                                     "device": None})
        key = STATES.get(t.state.name, t.state.name.lower())
        row[key] = row.get(key, 0) + 1
        row["device"] = row["device"] or t.user_attrs.get("device")
        if is_lost(t):
            row["lost"] += 1
    ages = heartbeat_ages(study)
    running = [{"trial": t.number, "worker": t.user_attrs.get("worker"), "started": t.datetime_start,
                "heartbeat_age_s": None if t.number not in ages else round(ages[t.number], 1)}
               for t in trials if t.state.name == "RUNNING"]
    df = trials_frame(study)
    front_rows: list[dict[str, Any]] = []
    if not df.empty:
        front = pareto_frame(df, fidelity)
        col = accuracy_column(df, fidelity)
        for _, r in front.iterrows():
            seed, worker = r.get("seed"), r.get("worker")
            front_rows.append({"trial": int(r["trial"]), "latency_ms": float(r["latency_ms"]),
                               "accuracy": float(r["accuracy"]), "accuracy_column": col,
                               "worker": worker if isinstance(worker, str) else None,
                               "seed": seed if isinstance(seed, str) else None})
    return {"study": name, "storage": redact(url), "fidelity": fidelity, "model": identity.get("model"),
            "device_kind": identity.get("device_kind"), "budget": study.user_attrs.get("budget"),
            "totals": study_counts(study, trials), "workers": workers, "running": running, "front": front_rows}


def render(info: dict[str, Any]) -> str:
    tot = info["totals"]
    budget = info["budget"]
    lines = [f"study {info['study']!r} in {info['storage']}: model {info['model']}, {info['fidelity']} fidelity, "
             f"device {info['device_kind']}",
             f"counted {tot['counted']}" + (f" of budget {budget}" if budget else "") +
             f": {tot['complete']} complete, {tot['failed']} failed by evaluation; {tot['running']} running, "
             f"{tot['waiting']} waiting, {tot['lost']} lost (worker killed or interrupted; re-run)"]
    lines.append("")
    width = max([len("worker")] + [len(w) for w in info["workers"]])
    lines.append(f"{'worker':<{width}}  complete  running  failed  (lost)  waiting  device")
    for w, r in sorted(info["workers"].items()):
        lines.append(f"{w:<{width}}  {r['complete']:>8}  {r['running']:>7}  {r['failed']:>6}  {r['lost']:>6}  "
                     f"{r['waiting']:>7}  {r.get('device') or '-'}")
    for r in info["running"]:
        age = "no heartbeat yet" if r["heartbeat_age_s"] is None else f"last heartbeat {r['heartbeat_age_s']:.0f} s ago"
        lines.append(f"  running: trial {r['trial']} on {r['worker'] or '?'}, {age}")
    lines.append("")
    if not info["front"]:
        lines.append("Pareto front: empty (no complete trial yet)")
    else:
        lines.append(f"Pareto front ({len(info['front'])} profiles, accuracy = {info['front'][0]['accuracy_column']}):")
        lines.append(f"{'trial':>6}  {'ms/token':>9}  {'accuracy':>10}  worker")
        for r in info["front"]:
            lines.append(f"{r['trial']:>6}  {r['latency_ms']:>9.3f}  {r['accuracy']:>10.4g}  {r['worker'] or '-'}"
                         + (f"  (seed {r['seed']})" if r.get("seed") else ""))
    return "\n".join(lines)
