"""`sparseinfer-dse analyze`: per-layer sparsity and sign-predictor precision/recall on real prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.atomic import replaced, write_text
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
    import torch
    from tqdm import tqdm

    from sparseinfer_dse.engine import sparsify
    from sparseinfer_dse.engine.analysis import PredictorAnalysis
    from sparseinfer_dse.engine.analysis_plot import plot_layers
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.engine.profile import AlphaProfile, parse_alpha_list
    from sparseinfer_dse.data.prompts import load_prompts

    alpha_list = parse_alpha_list(alphas)
    texts = load_prompts(prompts, limit, data_dir)
    given = AlphaProfile.load(profile) if profile else None  # a bad file fails before the model loads
    lm = load_model(ModelSpec(model, gguf_file, device, dtype, decode_activation), tokenizer=True)
    prof = given.check_model(lm.identity, allow_model_mismatch) if given else None
    handle = sparsify(lm, prof, backend)
    if handle.notice and not lm.activation.is_sparse:
        typer.echo(f"note: {handle.notice}", err=True)
    if prof is None:
        handle.configure(predict=False)
    else:
        alpha_list = sorted(set(alpha_list) | {a for a in prof.alphas if a is not None})
    analysis = PredictorAnalysis(handle, alpha_list)
    tok = lm.tokenizer
    with torch.no_grad():
        for text in tqdm(texts, desc="decoding prompts", unit="prompt"):
            enc = tok(text, return_tensors="pt").to(lm.device)
            lm.model.generate(**enc, max_new_tokens=tokens, do_sample=False, min_new_tokens=tokens,
                              pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    analysis.detach()
    rows = analysis.rows()
    df = pd.DataFrame(rows)
    _print_table(df, alpha_list)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with replaced(out / "layers.csv") as tmp:
            df.to_csv(tmp, index=False)
        meta = {"model": model, "profile": str(profile) if profile else None, "prompts": prompts, "limit": len(texts),
                "tokens": tokens, "backend": handle.backend, "decode_activation": lm.spec.decode_activation}
        write_text(out / "layers.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
        plot_layers(rows, out / "layers.png", f"{model}: sign predictor per layer ({len(texts)} prompts x {tokens} tokens)")
        typer.echo(f"wrote {out / 'layers.csv'}, layers.json, layers.png")


def _fmt(v: Optional[float]) -> str:
    return "  -  " if v is None else f"{v:5.3f}"


def _print_table(df, alpha_list) -> None:
    head = "layer  ideal  " + "  ".join(f"a={a:<5g} pred  prec   rec  " for a in alpha_list)
    typer.echo(head)
    for layer, grp in df.groupby("layer"):
        g = grp.set_index("alpha")
        cells = [f"{' ' * 7} {_fmt(g.at[a, 'predicted_sparsity'])} {_fmt(g.at[a, 'precision'])} {_fmt(g.at[a, 'recall'])}" for a in alpha_list]
        typer.echo(f"{layer:5d}  {grp['ideal_sparsity'].iloc[0]:5.3f}  " + "  ".join(cells))
