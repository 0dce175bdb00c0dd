"""How well do the cheap fidelity proxies rank profiles by accuracy?

For 20+ varied alpha profiles (uniform and per-layer, alpha 0.8 to 1.1) on the demo model:
the proxies (KL(dense || sparse), top-1 agreement, NLL; teacher-forced on demo-style training
problems, never the held-out ones) and lm-eval demo_arith accuracy (strict-match, limit 200).
Writes results.csv, results.json and README.md (table + Spearman rank correlations) here.

    python studies/proxy_correlation/run.py                      # the recorded study (demo model)
    python studies/proxy_correlation/run.py --model DIR --limit 20 --out /tmp/x   # a quick check
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def profiles(n: int, seed: int = 7) -> list[tuple[str, list]]:
    """Named alpha vectors for an n-layer model: uniform sweeps, single-layer probes, mixes, random."""
    out: list[tuple[str, list]] = [("dense", [None] * n)]
    for a in (0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 1.00, 1.03, 1.05, 1.10):
        out.append((f"uniform-{a:.2f}", [a] * n))
    half = n // 2
    out.append(("paper-1.03x-first-half", [1.03] * half + [1.0] * (n - half)))
    out.append(("0.85-first-half", [0.85] * half + [1.0] * (n - half)))
    out.append(("0.85-second-half", [1.0] * half + [0.85] * (n - half)))
    for i in range(n):
        v = [1.0] * n
        v[i] = 0.8
        out.append((f"0.80-only-layer{i}", v))
    out.append(("alternating-0.9/1.05", [0.9 if i % 2 == 0 else 1.05 for i in range(n)]))
    out.append(("ramp-0.8-to-1.1", [round(0.8 + 0.3 * i / max(1, n - 1), 3) for i in range(n)]))
    out.append(("ramp-1.1-to-0.8", [round(1.1 - 0.3 * i / max(1, n - 1), 3) for i in range(n)]))
    rng = random.Random(seed)
    for j in range(6):
        out.append((f"random-{j}", [round(rng.uniform(0.8, 1.1), 3) for _ in range(n)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--calibration-samples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--max-profiles", type=int, default=0, help="first N profiles only (quick checks)")
    args = ap.parse_args()

    import torch
    from scipy.stats import spearmanr

    from sparseinfer_dse.engine.sparsify import sparsify
    from sparseinfer_dse.eval.harness import evaluate_tasks
    from sparseinfer_dse.eval.calibration import demo_calibration
    from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.engine.profile import Profile

    loaded = load_model(ModelSpec(args.model, device="cpu"), tokenizer=True)
    tok = loaded.tokenizer
    n = loaded.identity.num_layers
    h = sparsify(loaded, None, backend="torch")
    cal = demo_calibration(args.calibration_samples)
    t0 = time.perf_counter()
    ref = DenseReference.build(h, tok, cal, batch_size=8)
    print(f"dense reference: {ref.n_tokens} decode positions in {time.perf_counter() - t0:.1f}s", flush=True)

    todo = profiles(n)
    if args.max_profiles:
        todo = todo[: args.max_profiles]
    rows = []
    for name, alphas in todo:
        prof = Profile(tuple(alphas), loaded.identity, name)
        h.set_profile(prof)
        h.configure(collect=True)
        h.reset_stats()
        px = proxy_metrics(h, tok, ref)
        skipped = [s["skipped"] for s in h.layer_stats()]
        h.configure(collect=False)
        t1 = time.perf_counter()
        ev = evaluate_tasks(h, tok, ["demo_arith"], limit=args.limit, batch_size=args.batch_size, seed=args.seed)
        secs = time.perf_counter() - t1
        r = ev["demo_arith"]
        row = {
            "profile": name,
            "alphas": " ".join("dense" if a is None else f"{a:.3f}" for a in alphas),
            "accuracy": r["metrics"]["exact_match,strict-match"]["value"],
            "stderr": r["metrics"]["exact_match,strict-match"]["stderr"],
            "flexible": r["metrics"]["exact_match,flexible-extract"]["value"],
            "n": r["n"],
            "kl": px["kl"],
            "top1": px["top1"],
            "nll": px["nll"],
            "skipped_rows": sum(skipped) / len(skipped),
            "proxy_seconds": px["seconds"],
            "eval_seconds": round(secs, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    acc = [r["accuracy"] for r in rows]
    corr = {}
    for key in ("kl", "top1", "nll"):
        rho, p = spearmanr([r[key] for r in rows], acc)
        corr[key] = {"spearman_rho": float(rho), "p_value": float(p)}
    # the part a search cares about: profiles that actually skip rows (dense left out)
    sparse_rows = [r for r in rows if r["profile"] != "dense"]
    for key in ("kl", "top1"):
        rho, p = spearmanr([r[key] for r in sparse_rows], [r["accuracy"] for r in sparse_rows])
        corr[f"{key}_sparse_only"] = {"spearman_rho": float(rho), "p_value": float(p)}

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {
        "model": args.model, "identity": loaded.identity.to_dict(), "task": "demo_arith", "limit": args.limit,
        "batch_size": args.batch_size, "seed": args.seed, "backend": h.backend, "calibration": ref.name,
        "calibration_decode_positions": ref.n_tokens, "dense_nll": ref.dense_nll,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "spearman": corr, "rows": rows}, indent=2) + "\n")
    (args.out / "README.md").write_text(render(meta, corr, rows))
    print(json.dumps(corr, indent=2))


def render(meta: dict, corr: dict, rows: list[dict]) -> str:
    lines = [
        "# Proxy quality: do cheap fidelity proxies rank profiles like accuracy does?",
        "",
        f"Model `{meta['model']}` ({meta['identity']['num_layers']} layers), backend `{meta['backend']}`. "
        f"Accuracy: lm-eval `demo_arith`, strict-match, first {meta['limit']} held-out problems, "
        f"batch {meta['batch_size']}, seed {meta['seed']}. Proxies: teacher-forced decode steps on "
        f"`{meta['calibration']}` ({meta['calibration_decode_positions']} scored positions, demo training "
        "distribution, disjoint from the held-out set), against the dense model. "
        "Produced by `python studies/proxy_correlation/run.py`.",
        "",
        "Spearman rank correlation with accuracy (over all profiles; KL and NLL should be negative, top-1 positive):",
        "",
        "| proxy | rho (all profiles) | p | rho (sparse profiles only) |",
        "|---|---|---|---|",
    ]
    for key in ("kl", "top1", "nll"):
        so = corr.get(f"{key}_sparse_only", {}).get("spearman_rho")
        lines.append(f"| {key} | {corr[key]['spearman_rho']:+.3f} | {corr[key]['p_value']:.2g} | "
                     f"{'' if so is None else f'{so:+.3f}'} |")
    lines += [
        "",
        "| profile | alphas | accuracy % | stderr | KL (nats) | top-1 % | NLL | rows skipped % | eval s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["kl"]):
        lines.append(
            f"| {r['profile']} | {r['alphas']} | {100 * r['accuracy']:.1f} | {100 * (r['stderr'] or 0):.1f} | "
            f"{r['kl']:.4f} | {100 * r['top1']:.2f} | {r['nll']:.4f} | {100 * r['skipped_rows']:.1f} | {r['eval_seconds']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
