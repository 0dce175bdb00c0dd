"""`sparseinfer-dse profile make|show`: build and validate alpha profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.options import GgufFileOpt, JsonFlag, ModelOpt

profile_app = typer.Typer(help="Build and check alpha profiles (one alpha per decoder layer).", no_args_is_help=True)


@profile_app.command("make")
def make_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the profile JSON.")],
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    uniform: Annotated[Optional[float], typer.Option(help="Same alpha on every layer.")] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's heuristic: --alpha on the first --first layers, 1.00 after.")] = False,
    alpha: Annotated[float, typer.Option(help="Alpha of --paper's early layers.")] = 1.03,
    first: Annotated[Optional[int], typer.Option(help="Layers --paper applies --alpha to (default: half).")] = None,
    dense: Annotated[bool, typer.Option("--dense", help="Every layer dense (no prediction).")] = False,
    alphas: Annotated[Optional[str], typer.Option(help="Explicit comma list, one per layer ('dense' for a dense layer).")] = None,
) -> None:
    """Write a profile for a model: --uniform A, --paper [--alpha A --first N], --dense or --alphas LIST."""
    from sparseinfer_dse.errors import UserError
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.engine.profile import AlphaProfile, ProfileError

    chosen = [uniform is not None, paper, dense, alphas is not None]
    if sum(chosen) != 1:
        raise UserError("choose exactly one of --uniform, --paper, --dense, --alphas")
    ident = load_model(ModelSpec(model, gguf_file), weights=False).identity
    n = ident.num_layers
    if uniform is not None:
        prof = AlphaProfile.uniform(n, uniform, ident)
    elif paper:
        prof = AlphaProfile.paper(n, alpha, first, ident)
    elif dense:
        prof = AlphaProfile.dense(n, ident)
    else:
        vals = [None if v.strip() == "dense" else v.strip() for v in alphas.split(",")]
        try:
            parsed = [None if v is None else float(v) for v in vals]
        except ValueError:
            raise ProfileError(f"--alphas must be numbers or 'dense', got {alphas!r}") from None
        prof = AlphaProfile(tuple(parsed), ident, "custom").check_model(ident)
    prof.save(out)
    typer.echo(f"wrote {out} ({prof.name}, {n} layers)")


@profile_app.command("show")
def show_command(
    path: Annotated[Path, typer.Argument(help="Profile JSON to validate and print.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Also check the profile fits this model.")] = None,
    gguf_file: GgufFileOpt = None,
    allow_model_mismatch: Annotated[bool, typer.Option(help="Accept a profile made for another model with the same layer count.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Validate a profile (and optionally that it fits --model) and print it."""
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.engine.profile import AlphaProfile, alphas_repr

    prof = AlphaProfile.load(path)
    if model is not None:
        prof.check_model(load_model(ModelSpec(model, gguf_file), weights=False).identity, allow_model_mismatch)
    if as_json:
        typer.echo(json.dumps(prof.to_dict(), indent=2))
        return
    who = f"{prof.model.name} ({prof.model.config_hash})" if prof.model else "any model"
    typer.echo(f"{path}: {prof.name or 'unnamed'}, {prof.num_layers} layers, for {who}")
    typer.echo(f"alphas: {alphas_repr(prof.alphas)}")
    if prof.metrics:
        typer.echo(f"metrics: {json.dumps(prof.metrics)}")
