"""`sparseinfer-dse report`: redraw a search folder's HTML report and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(study: Annotated[Path, typer.Option("--study", help="A search output folder.")]) -> None:
    """Redraw the HTML report and PNGs of a search folder (offline: images beside report.html)."""
    from sparseinfer_dse.search.report import write_report

    typer.echo(f"wrote {write_report(study)}")
