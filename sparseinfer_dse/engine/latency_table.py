"""The plain-text table `bench model` prints for a `measure_decode_latency` result."""

from __future__ import annotations

from typing import Any

from sparseinfer_dse.engine.latency import FIG4_LABELS


def format_table(res: dict[str, Any]) -> str:
    """A plain-text table of a `measure_decode_latency` result."""
    lines = [f"{'run':<20} {'ms/token':>9} {'p10':>8} {'p90':>8} {'tok/s':>7} {'speedup':>8} {'paired':>7} {'top1':>5}"]

    def row(label: str, s: dict[str, Any]) -> str:
        sp = f"{s['speedup']:.2f}x" if "speedup" in s else "1.00x"
        pr = f"{s['speedup_paired']:.2f}x" if "speedup_paired" in s else ""
        t1 = f"{s['top1_agreement']:.2f}" if s.get("top1_agreement") is not None else ""
        return (f"{label:<20} {s['ms_per_token']:>9.2f} {s['p10_ms']:>8.2f} {s['p90_ms']:>8.2f} "
                f"{s['tokens_per_s']:>7.2f} {sp:>8} {pr:>7} {t1:>5}")

    if res.get("dense"):
        lines.append(row("dense", res["dense"]))
    for name, s in res["variants"].items():
        lines.append(row(FIG4_LABELS[name], s))
    if "dense_mlp_ms_per_token" in res:
        lines.append("")
        lines.append(f"MLP share of the dense step: {res['dense_mlp_share']:.1%} "
                     f"({res['dense_mlp_ms_per_token']:.2f} of {res['dense_step_ms_per_token_hooked']:.2f} ms/token)")
        if "sparse_mlp_ms_per_token" in res:
            lines.append(f"MLP in the sparse step ({res.get('sparse_variant')}): {res['sparse_mlp_ms_per_token']:.2f} ms/token "
                         f"({res['sparse_mlp_share']:.1%} of {res['sparse_step_ms_per_token_hooked']:.2f}); "
                         f"MLP speedup {res['dense_mlp_ms_per_token'] / res['sparse_mlp_ms_per_token']:.2f}x")
    if res.get("layers"):
        lines.append("")
        lines.append(f"{'layer':>5} {'alpha':>6} {'relu':>6} {'pred':>6} {'+AS':>6} {'skipped':>8}")
        for l in res["layers"]:
            a = "dense" if l["alpha"] is None else f"{l['alpha']:.2f}"
            lines.append(f"{l['layer']:>5} {a:>6} {l['relu_sparsity']:>6.1%} {l['predicted_sparsity']:>6.1%} "
                         f"{l['actual_sparsity']:>6.1%} {l['skipped']:>8.1%}")
    return "\n".join(lines)
