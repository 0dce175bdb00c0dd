"""`sparseinfer-dse report`: rewrite a search folder's outputs from its study, then its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    study: Annotated[Path, typer.Option("--study", help="A search output folder.")],
    storage: Annotated[Optional[str], typer.Option(help="The study's storage URL, when study.json does not hold it whole (a password).")] = None,
) -> None:
    """Rewrite trials.csv, pareto.csv, profiles/ and study.json from the study's storage (what
    `export` reads), then draw the HTML report and plots (offline: files beside report.html)."""
    from sparseinfer_dse.search.outputs import rewrite_outputs
    from sparseinfer_dse.search.report import write_report

    if rewrite_outputs(study, storage) is None:
        typer.echo(f"note: no reachable study storage for {study}: the report is drawn from the files as they are",
                   err=True)
    typer.echo(f"wrote {write_report(study)}")
