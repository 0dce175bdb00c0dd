"""`sparseinfer-dse bench latency-model`: a study's calibrated latency model and its error on held-out
profiles (search/latency_model_check.py measures; here the options are parsed and the table printed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.openmp import passive_openmp


def bench_latency_model_command(
    study: Annotated[Path, typer.Option("--study", help="A study TOML (model, method, level grid, latency workload, device, threads), as for `search --study`.")],
    heldout: Annotated[int, typer.Option(help="Random per-layer profiles on the study's grid, measured against the prediction.")] = 8,
    grid_points: Annotated[int, typer.Option(help="Levels the model measures, evenly spaced over the study's range.")] = 5,
    repeats: Annotated[Optional[int], typer.Option(help="Latency rounds over the prompts (default: the study's latency_repeats).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out profiles.")] = 0,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse a latency model measured before with the same settings on this machine.")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the model, the held-out rows and the errors as JSON.")] = None,
) -> None:
    """Measure a latency model once (each layer's MLP at a grid of levels, plus the rest of the step),
    predict held-out profiles' decode time from their per-layer levels, and compare with their
    measured paired ratio to dense (95% interval). Sets OMP_WAIT_POLICY=PASSIVE unless it is set."""
    omp_warning = passive_openmp()
    if omp_warning:
        typer.echo(f"warning: {omp_warning}", err=True)
    from sparseinfer_dse.search.latency_model_check import LatencyModelCheck, format_check, run_latency_model_check
    from sparseinfer_dse.search.options import SearchOptions

    opts = SearchOptions.resolve({}, study)
    res = run_latency_model_check(LatencyModelCheck(opts, heldout, grid_points, repeats, seed, cache),
                                  say=lambda m: typer.echo(m, err=True))
    res["command"] = (f"sparseinfer-dse bench latency-model --study {study} --heldout {heldout} --grid-points "
                      f"{grid_points}{f' --repeats {repeats}' if repeats else ''} --seed {seed}"
                      f"{'' if cache else ' --no-cache'}{f' --json {json_out}' if json_out else ''}")
    typer.echo(format_check(res))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_out, json.dumps(res, indent=1) + "\n")
        typer.echo(f"wrote {json_out}")
