"""One `analyze` run: load, sparsify, decode real prompts with the predictor observed, and write the
per-layer rows (the paper's Fig. 3) as CSV, JSON and a plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from sparseinfer_dse.atomic import replaced, write_text
from sparseinfer_dse.data.prompts import load_prompts
from sparseinfer_dse.engine.analysis import PredictorAnalysis
from sparseinfer_dse.engine.analysis_plot import plot_layers
from sparseinfer_dse.engine.profile import Profile, parse_alpha_list
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.models.loading import ModelSpec, load_model


@dataclass(frozen=True)
class Analysis:
    """The settings of one run (the `analyze` options)."""

    spec: ModelSpec
    profile: Optional[Path] = None
    prompts: str = "demo"
    limit: int = 24
    tokens: int = 48
    alphas: str = "1.0,1.01,1.02,1.03"
    data_dir: Optional[Path] = None
    out: Optional[Path] = None
    backend: str = "auto"
    allow_model_mismatch: bool = False


def run_analysis(job: Analysis, say: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Decode every prompt (greedy, `tokens` new tokens) and return {"alphas", "rows", "meta"}.

    Without a profile prediction is off, so the trajectory is the dense model's (exactly, for ReLU
    models); with one it follows the sparsified model and its alphas join the reported ones."""
    import torch
    from tqdm import tqdm

    alpha_list = parse_alpha_list(job.alphas)
    texts = load_prompts(job.prompts, job.limit, job.data_dir)
    given = Profile.load(job.profile) if job.profile else None  # a bad file fails before the model loads
    lm = load_model(job.spec, tokenizer=True)
    prof = given.check_model(lm.identity, job.allow_model_mismatch) if given else None
    handle = sparsify(lm, prof, job.backend)
    if handle.notice and not lm.activation.is_sparse:
        say(f"note: {handle.notice}")
    if prof is None:
        handle.configure(predict=False)
    else:
        alpha_list = sorted(set(alpha_list) | {a for a in prof.levels if a is not None})
    analysis = PredictorAnalysis(handle, alpha_list)
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    try:
        with torch.no_grad():
            for text in tqdm(texts, desc="decoding prompts", unit="prompt"):
                enc = tok(text, return_tensors="pt").to(lm.device)
                lm.model.generate(**enc, max_new_tokens=job.tokens, do_sample=False, min_new_tokens=job.tokens,
                                  pad_token_id=pad)
    finally:
        analysis.detach()
    meta = {"model": job.spec.model, "profile": str(job.profile) if job.profile else None, "prompts": job.prompts,
            "limit": len(texts), "tokens": job.tokens, "backend": handle.backend,
            "decode_activation": lm.spec.decode_activation}
    return {"alphas": alpha_list, "rows": analysis.rows(), "meta": meta}


def write_analysis(result: dict[str, Any], out: Path) -> Path:
    """layers.csv, layers.json and layers.png in `out` (each replaced whole); returns the CSV's path."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    rows, meta = result["rows"], result["meta"]
    with replaced(out / "layers.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_text(out / "layers.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
    plot_layers(rows, out / "layers.png",
                f"{meta['model']}: sign predictor per layer ({meta['limit']} prompts x {meta['tokens']} tokens)")
    return out / "layers.csv"
