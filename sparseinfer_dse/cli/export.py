"""`sparseinfer-dse export`: a profile (or the whole front) out of a finished search folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.errors import UserError


def export_command(
    study: Annotated[Path, typer.Option("--study", help="A search output folder.")],
    out: Annotated[Optional[Path], typer.Option(help="Profile file to write (a folder with --pareto).")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Fastest profile within this loss of the dense accuracy (the study's accuracy units: points for lm-eval).")] = None,
    max_latency: Annotated[Optional[float], typer.Option(help="Most accurate profile at or under this ms/token.")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="Export every Pareto profile.")] = False,
) -> None:
    """Export a profile from a finished search; it loads with --profile everywhere.

    Verified figures (verified.csv, from `verify` or the end of `search`) are preferred: the
    candidates are then the points on the verified front."""
    from sparseinfer_dse.search.export import export_front, export_one

    if pareto:
        paths = export_front(study, out or study / "export")
        typer.echo(f"wrote {len(paths)} profiles to {out or study / 'export'}")
        return
    if max_accuracy_drop is None and max_latency is None:
        raise UserError("give --max-accuracy-drop, --max-latency (or both), or --pareto")
    path, row = export_one(study, out or study / "chosen-profile.json", max_accuracy_drop=max_accuracy_drop,
                           max_latency=max_latency)
    source = "verified" if (study / "verified.csv").is_file() else "search-time"
    typer.echo(f"wrote {path}: trial {int(row['trial'])}, {row['latency_ms']:.3f} ms/token, accuracy {row['accuracy']:.4g} "
               f"({source} figures)")
