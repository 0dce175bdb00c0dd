"""`sparseinfer-dse synthetic build`: save a synthetic ProSparse-shaped model as a loadable HF directory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from sparseinfer_dse.cli.options import DtypeOpt


def synthetic_build_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write (config.json, model.safetensors, tokenizer files).")],
    name: Annotated[str, typer.Option("--name", help="synthetic-7b or synthetic-13b, optionally :L<layers> (default 4 layers).")] = "synthetic-7b:L4",
    dtype: DtypeOpt = "float32",
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Also decode a few tokens and print each layer's ReLU and predicted (alpha 1.00) sparsity.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into --out even if it is not empty.")] = False,
    hidden_size: Annotated[Optional[int], typer.Option("--hidden-size", help="Override d (smaller test models).")] = None,
    intermediate_size: Annotated[Optional[int], typer.Option("--intermediate-size", help="Override k.")] = None,
    heads: Annotated[Optional[int], typer.Option("--heads", help="Override the number of attention heads.")] = None,
) -> None:
    """Build a model with ProSparse-Llama2 layer shapes and random weights whose ReLU sparsity at
    decode is about 90% per layer (a stand-in for latency measurements; it knows no language),
    and save it where `--model DIR` can load it."""
    import torch

    from sparseinfer_dse.errors import UserError
    from sparseinfer_dse.models.loading import resolve_dtype
    from sparseinfer_dse.engine.layer_stats import decode_sparsity
    from sparseinfer_dse.models.synthetic import build_synthetic, weight_bytes

    dt = resolve_dtype(dtype)
    dt = torch.float32 if dt == "auto" else dt
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise UserError(f"{out} exists and is not an empty directory (pass --force to write into it)")
    t0 = time.perf_counter()
    model, tok = build_synthetic(name, dtype=dt, seed=seed, d=hidden_size, k=intermediate_size, heads=heads)
    built = time.perf_counter() - t0
    cfg = model.config
    wb = weight_bytes(model)
    total = sum(wb.values())
    typer.echo(f"built {name}: {cfg.num_hidden_layers} layers, d={cfg.hidden_size}, k={cfg.intermediate_size}, "
               f"{cfg.num_attention_heads} heads, vocab {cfg.vocab_size}, {str(dt).replace('torch.', '')}, "
               f"{total / 2**30:.2f} GiB of weights read per token (MLP {wb['mlp'] / total:.1%}) in {built:.1f} s")
    if check:
        rows = decode_sparsity(model, tok, tokens=8)
        typer.echo("layer  relu-sparsity  predicted@1.00  precision  recall")
        for r in rows:
            typer.echo(f"{r['layer']:>5}  {r['relu_sparsity']:>13.1%}  {r['predicted_sparsity']:>14.1%}  "
                       f"{r['precision']:>9.1%}  {r['recall']:>6.1%}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "synthetic.json").write_text(json.dumps({
        "name": name, "seed": seed, "dtype": str(dt).replace("torch.", ""),
        "note": "random weights built by sparseinfer-dse for latency measurements; not a trained model",
        "recipe": cfg.sparseinfer_synthetic,
    }, indent=2) + "\n")
    typer.echo(f"wrote {out} (load it with --model {out})")
