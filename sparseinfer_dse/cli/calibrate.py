"""`sparseinfer-dse calibrate`: a method's thresholds for a model, computed once and cached
(eval/threshold_calibration.py); `search` and `profile make` use the cached table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.options import DeviceOpt, DtypeOpt, GgufFileOpt, JsonFlag, ModelOpt


def calibrate_command(
    method: Annotated[str, typer.Option(help="cats, teal, wisparse or rsparse.")],
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    calibration: Annotated[Optional[str], typer.Option(help="Calibration text: gsm8k (GSM8K train questions with their answers; the default), demo or a file.")] = None,
    samples: Annotated[int, typer.Option(help="Calibration sequences.")] = 64,
    max_tokens: Annotated[int, typer.Option(help="Positions kept per layer (a random subset of all).")] = 4096,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with gsm8k/ (default: the shipped copy).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    refresh: Annotated[bool, typer.Option(help="Compute again even when the cache holds the table.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Calibrate a method's thresholds on a model and print, per layer, what 50% sparsity resolves to.

    The dense model runs over the calibration text; each layer's scores (|act(gate)| for cats,
    |x| for teal, |x| times the weight's column norm for wisparse and rsparse) give the threshold for any target
    sparsity, and for wisparse the split of a layer's target between gate, up and down that keeps the
    block's output error lowest. Cached under $SPARSEINFER_DSE_CACHE/thresholds."""
    from sparseinfer_dse.engine.methods import get_method
    from sparseinfer_dse.errors import UserError
    from sparseinfer_dse.eval.threshold_calibration import CalibrationSpec, calibrate
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    if not get_method(method).calibrated:
        raise UserError(f"--method {method} takes no calibration (choose cats, teal, wisparse or rsparse)")
    if samples < 1 or max_tokens < 1:
        raise UserError("--samples and --max-tokens must be at least 1")
    lm = load_model(ModelSpec(model, gguf_file, device, dtype), tokenizer=True)
    spec = CalibrationSpec(text=calibration, samples=samples, max_tokens=max_tokens, data_dir=data_dir)
    table = calibrate(lm, method, spec, refresh=refresh, say=lambda m: typer.echo(m, err=True))
    rows = [{"layer": i, **{f"{p}_sparsity": round(v, 3) for p, v in table.projection_levels(i, 0.5).items()},
             **{f"{p}_threshold": v for p, v in table.thresholds(i, 0.5).items()}} for i in range(table.num_layers)]
    if as_json:
        typer.echo(json.dumps({"method": method, "calibration": table.calibration, "at_50pct": rows}, indent=2))
        return
    typer.echo(f"{method} on {lm.identity.name}: {table.calibration['text']}, {table.calibration['tokens']} positions")
    typer.echo("at a layer target of 50%:")
    for r in rows:
        parts = [f"{p} {r[f'{p}_sparsity'] * 100:.0f}% > {r[f'{p}_threshold']:.4g}" for p in table.projections]
        typer.echo(f"  layer {r['layer']:>3}: " + ", ".join(parts))
