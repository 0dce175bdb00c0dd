"""`sparseinfer-dse analyze`: per-layer sparsity and sign-predictor precision/recall on real prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.options import (
    DecodeActivationOpt,
    DeviceOpt,
    DtypeOpt,
    GgufFileOpt,
    ModelOpt,
    ProfileOpt,
)


def analyze_command(
    model: ModelOpt = "demo",
    profile: ProfileOpt = None,
    prompts: Annotated[str, typer.Option(help="gsm8k or bbh (from --data-dir), demo (the demo's held-out problems), or a .txt/.jsonl file.")] = "demo",
    limit: Annotated[int, typer.Option(help="Number of prompts.")] = 24,
    tokens: Annotated[int, typer.Option(help="Tokens decoded per prompt.")] = 48,
    alphas: Annotated[str, typer.Option(help="Alphas whose predictor statistics are reported.")] = "1.0,1.01,1.02,1.03",
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with gsm8k/ and bbh/ (default: the GSM8K and BBH data shipped in sparseinfer_dse/data).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write layers.csv, layers.json and layers.png here.")] = None,
    backend: Annotated[str, typer.Option(help="auto, numba-cpu, numba-cuda or torch.")] = "auto",
    gguf_file: GgufFileOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    decode_activation: DecodeActivationOpt = None,
    allow_model_mismatch: Annotated[bool, typer.Option(help="Accept a profile made for another model.")] = False,
) -> None:
    """Decode real prompts and report, per layer: ideal sparsity (rows exactly zero after the
    activation), predicted sparsity, predictor precision and recall (the paper's Fig. 3), and the
    sparsity actual-sparsity checks add after prediction, for each alpha in --alphas.

    Without --profile decoding runs with prediction off, so the trajectory is the dense model's
    (for ReLU models, exactly); with --profile it follows the sparsified model.
    """
    import pandas as pd

    from sparseinfer_dse.engine.analysis_job import Analysis, run_analysis, write_analysis
    from sparseinfer_dse.models.loading import ModelSpec

    job = Analysis(ModelSpec(model, gguf_file, device, dtype, decode_activation), profile, prompts, limit, tokens,
                   alphas, data_dir, out, backend, allow_model_mismatch)
    result = run_analysis(job, say=lambda msg: typer.echo(msg, err=True))
    _print_table(pd.DataFrame(result["rows"]), result["alphas"])
    if out is not None:
        typer.echo(f"wrote {write_analysis(result, out)}, layers.json, layers.png")


def _fmt(v: Optional[float]) -> str:
    return "  -  " if v is None else f"{v:5.3f}"


def _print_table(df, alpha_list) -> None:
    head = "layer  ideal  " + "  ".join(f"a={a:<5g} pred  prec   rec  " for a in alpha_list)
    typer.echo(head)
    for layer, grp in df.groupby("layer"):
        g = grp.set_index("alpha")
        cells = [f"{' ' * 7} {_fmt(g.at[a, 'predicted_sparsity'])} {_fmt(g.at[a, 'precision'])} {_fmt(g.at[a, 'recall'])}" for a in alpha_list]
        typer.echo(f"{layer:5d}  {grp['ideal_sparsity'].iloc[0]:5.3f}  " + "  ".join(cells))
