"""`sparseinfer-dse profile make|show`: build and validate profiles (a method and a level per layer)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.options import GgufFileOpt, JsonFlag, ModelOpt

profile_app = typer.Typer(help="Build and check profiles (a method and its level per decoder layer: an alpha for "
                          "sparseinfer, a target sparsity for cats / teal / wisparse / rsparse).", no_args_is_help=True)


@profile_app.command("make")
def make_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the profile JSON.")],
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    method: Annotated[str, typer.Option(help="sparseinfer (levels are alphas), or cats, teal, wisparse, rsparse (levels are target sparsities; thresholds are calibrated on the model, cached).")] = "sparseinfer",
    rank: Annotated[Optional[int], typer.Option(help="rsparse: the rank of every sparse layer's low-rank remainder (default 0: none).")] = None,
    uniform: Annotated[Optional[float], typer.Option(help="Same level on every layer (an alpha, or a sparsity such as 0.5).")] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's heuristic: --alpha on the first --first layers, 1.00 after.")] = False,
    alpha: Annotated[float, typer.Option(help="Alpha of --paper's early layers.")] = 1.03,
    first: Annotated[Optional[int], typer.Option(help="Layers --paper applies --alpha to (default: half).")] = None,
    dense: Annotated[bool, typer.Option("--dense", help="Every layer dense (no prediction).")] = False,
    levels: Annotated[Optional[str], typer.Option(help="Explicit comma list, one level per layer (an alpha or a sparsity; 'dense' for a dense layer).")] = None,
    calibration: Annotated[Optional[str], typer.Option(help="Threshold calibration text for cats/teal/wisparse/rsparse: gsm8k (default), demo or a file.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with gsm8k/ for the calibration text (default: the shipped copy).")] = None,
) -> None:
    """Write a profile for a model: --uniform L, --paper [--alpha A --first N], --dense or --levels LIST.

    For cats, teal, wisparse and rsparse the thresholds each layer's sparsity resolves to are
    calibrated on the model (once; cached) and written into the profile, so it applies the same way
    anywhere; rsparse's --rank is written per layer (its SVD factors are computed where it runs)."""
    from sparseinfer_dse.engine.methods import get_method
    from sparseinfer_dse.engine.profile import Profile, ProfileError
    from sparseinfer_dse.errors import UserError
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    chosen = [uniform is not None, paper, dense, levels is not None]
    if sum(chosen) != 1:
        raise UserError("choose exactly one of --uniform, --paper, --dense, --levels")
    spec = get_method(method)
    if paper and spec.knob != "alpha":
        raise UserError("--paper is SparseInfer's alpha heuristic; use --uniform or --levels for " + method)
    if rank is not None and not spec.ranked:
        raise UserError(f"--rank is rsparse's; {method} takes no rank")
    calibrated = spec.calibrated and not dense
    lm = load_model(ModelSpec(model, gguf_file), weights=calibrated, tokenizer=calibrated)
    ident = lm.identity
    n = ident.num_layers
    if uniform is not None:
        prof = Profile.uniform(n, uniform, ident, method)
    elif paper:
        prof = Profile.paper(n, alpha, first, ident)
    elif dense:
        prof = Profile.dense(n, ident, method)
    else:
        vals = [None if v.strip() == "dense" else v.strip() for v in levels.split(",")]
        try:
            parsed = [None if v is None else float(v) for v in vals]
        except ValueError:
            raise ProfileError(f"--levels must be numbers or 'dense', got {levels!r}") from None
        prof = Profile(tuple(parsed), ident, "custom", methods=method).check_model(ident)
    if rank:
        prof = replace(prof, ranks=tuple(None if a is None else rank for a in prof.levels))
    if calibrated:
        from sparseinfer_dse.engine.thresholds import resolve_thresholds
        from sparseinfer_dse.eval.threshold_calibration import CalibrationSpec, calibrate

        table = calibrate(lm, method, CalibrationSpec(text=calibration, data_dir=data_dir),
                          say=lambda m: typer.echo(m, err=True))
        prof = resolve_thresholds(prof, {method: table})
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
    from sparseinfer_dse.engine.profile import Profile, levels_repr

    prof = Profile.load(path)
    if model is not None:
        prof.check_model(load_model(ModelSpec(model, gguf_file), weights=False).identity, allow_model_mismatch)
    if as_json:
        typer.echo(json.dumps(prof.to_dict(), indent=2))
        return
    who = f"{prof.model.name} ({prof.model.config_hash})" if prof.model else "any model"
    typer.echo(f"{path}: {prof.name or 'unnamed'}, {prof.num_layers} layers, for {who}")
    typer.echo(levels_repr(prof))
    if prof.metrics:
        typer.echo(f"metrics: {json.dumps(prof.metrics)}")
