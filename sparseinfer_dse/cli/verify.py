"""`sparseinfer-dse verify`: measure a finished search's front, seeds and dense again (search/verify.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def verify_command(
    study: Annotated[Path, typer.Option("--study", help="A search output folder.")],
    repeats: Annotated[Optional[int], typer.Option(help="Latency rounds over the prompts, all candidates interleaved (default: 3x the search's --latency-repeats).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Documents per lm-eval task (default: all of them).")] = None,
    storage: Annotated[Optional[str], typer.Option(help="The study's storage URL, when study.json does not hold it whole (a password).")] = None,
    report: Annotated[bool, typer.Option(help="Redraw the report with the verified points.")] = True,
    also: Annotated[Optional[list[str]], typer.Option("--also", help="Also measure this profile in the same run, for comparison only (never on the front or exported): trial-N or a seed name of this study, DIR:trial-N of another search folder (another method), or a profile JSON. Repeatable.")] = None,
) -> None:
    """Measure the front's profiles, the seeds and dense again, together, with more runs.

    Latency: every candidate and dense decode the same tokens in rotating order, round after round,
    so each gets its paired ratio to dense with a 95% interval from the same run. Accuracy: measured
    as the search measured it (same backend, batch size, seed) on every task document unless
    --limit. Writes verified.csv beside pareto.csv; `export` prefers its figures.
    """
    import pandas as pd

    from sparseinfer_dse.search.front_table import format_points
    from sparseinfer_dse.search.verify import VerifyOptions, run_verify

    df = run_verify(VerifyOptions(study, repeats, limit, storage, report, tuple(also or ())), say=typer.echo)
    typer.echo(format_points(pd.DataFrame(df)))
    typer.echo(f"wrote {study / 'verified.csv'}" + (f" and {study / 'report.html'}" if report else ""))
