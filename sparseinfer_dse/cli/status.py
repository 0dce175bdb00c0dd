"""`sparseinfer-dse status`: how a (possibly distributed) search stands: trials per worker, the front."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from sparseinfer_dse.cli.options import JsonFlag
from sparseinfer_dse.errors import UserError


def status_command(
    name: Annotated[str, typer.Option(help="Study name (the search's --name).")] = "demo",
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default: the SQLite file of studies/runs/<name>).")] = None,
    as_json: JsonFlag = False,
    grace_period: Annotated[Optional[float], typer.Option(help="Seconds without heartbeat after which a running trial counts as lost (default: the study's workers' --grace-period).")] = None,
) -> None:
    """Trials complete, running, failed and waiting per worker, and the current Pareto front.

    Read-only: it never changes the study (a dead worker's trial is failed by the workers).
    """
    from sparseinfer_dse.search.status import study_status

    info = study_status(storage or _default_storage(name), name, grace_period)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(render(info))


def _default_storage(name: str) -> str:
    from sparseinfer_dse.search.options import default_out

    db = default_out(name) / "study.db"
    if not db.is_file():
        raise UserError(f"no --storage given and {db} does not exist; pass the search's --storage URL")
    return f"sqlite:///{db.resolve()}"


def render(info: dict[str, Any]) -> str:
    """The status as text (what `status` prints without --json)."""
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
        if r.get("lost"):
            lines.append(f"  lost: trial {r['trial']} on {r['worker'] or '?'}, {age} (grace period "
                         f"{info['grace_period_s']:g} s): its worker is gone; the next worker fails it and reruns its profile")
        else:
            lines.append(f"  running: trial {r['trial']} on {r['worker'] or '?'}, {age}")
    lines.append("")
    if not info["front"]:
        lines.append("Pareto front: empty (no complete trial yet)")
    else:
        lines.append(f"Pareto front ({len(info['front'])} profiles, accuracy = {info['front'][0]['accuracy_column']}):")
        from sparseinfer_dse.search.front_table import with_interval

        lines.append(f"{'trial':>6}  {'ms/token [95% CI]':<24}  {'accuracy [95% CI]':<24}  worker")
        for r in info["front"]:
            lat = with_interval(r["latency_ms"], r.get("latency_ci_low_ms"), r.get("latency_ci_high_ms"))
            acc = with_interval(r["accuracy"], r.get("accuracy_low"), r.get("accuracy_high"))
            lines.append(f"{r['trial']:>6}  {lat:<24}  {acc:<24}  {r['worker'] or '-'}"
                         + (f"  (seed {r['seed']})" if r.get("seed") else "")
                         + (f"  vs dense: {r['vs_dense']}" if r.get("vs_dense") else ""))
    return "\n".join(lines)
