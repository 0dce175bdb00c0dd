"""`sparseinfer-dse inspect`: what a model is and whether SparseInfer applies to it."""

from __future__ import annotations

import json

import typer

from sparseinfer_dse.cli.options import DecodeActivationOpt, DeviceOpt, DtypeOpt, GgufFileOpt, JsonFlag, ModelOpt


def inspect_command(
    model: ModelOpt = "demo",
    gguf_file: GgufFileOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    decode_activation: DecodeActivationOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Describe a model: layers, d, k, activation, dtype, parameters, MLP bytes read per decoded token,
    the sign-bit memory SparseInfer needs, and whether SparseInfer applies (and why not).

    Reads only the config and builds the model on the meta device, so it is fast even for 13B models.
    """
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.models.summary import format_summary, summarize

    spec = ModelSpec(model, gguf_file, device, dtype, decode_activation)
    lm = load_model(spec, weights=False)
    summary = summarize(lm)
    if lm.source.kind == "demo":
        from sparseinfer_dse import demo

        card = getattr(demo, "card", None)
        if card is not None:
            summary["demo"] = card()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(format_summary(summary))
    if "demo" in summary:
        typer.echo("\nbuilt-in demo model: see `sparseinfer-dse demo info` for its recipe, accuracy and sparsity")
