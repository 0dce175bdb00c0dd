"""Several methods' SmolLM2 studies on the same axes: every trial's paired latency ratio to dense
(sparse/dense, measured within its own study, so studies run at different machine loads compare)
against its KL to the dense model, both with their 95% intervals; each study's front (on the
medians) drawn as a line, the uniform seeds labelled. Writes a PNG and prints each study's front.

    python studies/methods/compare_methods.py studies/results/smollm2-methods.png \
        studies/results/smollm2-wisparse studies/results/smollm2-rsparse
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from front_vs_uniform import UNIFORM, load  # noqa: E402


def front(df):
    """The trials no other trial beats on both medians (lower ratio and lower KL), by ratio."""
    pts = df.sort_values(["latency_ratio", "proxy_kl"])
    out, best = [], np.inf
    for _, r in pts.iterrows():
        if r["proxy_kl"] < best:
            out.append(r)
            best = r["proxy_kl"]
    return out


def main(out: str, studies: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for color, path in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], studies):
        df = load(Path(path))
        df = df[df["seed"] != "dense"]
        method = Path(path).name.split("-", 1)[-1]
        kl_lo, kl_hi = -df["proxy_ci_high"], -df["proxy_ci_low"]
        ax.errorbar(df["latency_ratio"], df["proxy_kl"],
                    xerr=[df["latency_ratio"] - df["latency_ratio_ci_low"], df["latency_ratio_ci_high"] - df["latency_ratio"]],
                    yerr=[df["proxy_kl"] - kl_lo, kl_hi - df["proxy_kl"]], fmt="o", ms=4, color=color, alpha=0.35,
                    elinewidth=0.8, label=f"{method} trials")
        f = front(df)
        ax.plot([r["latency_ratio"] for r in f], [r["proxy_kl"] for r in f], "-", color=color, lw=2, drawstyle="steps-post",
                label=f"{method} front")
        print(f"{method}: front " + ", ".join(f"t{int(r['trial'])} ({r['latency_ratio']:.3f}, KL {r['proxy_kl']:.3g})"
                                              for r in f))
        for name in UNIFORM:
            u = df[df["seed"] == name]
            if len(u):
                u = u.iloc[0]
                ax.plot(u["latency_ratio"], u["proxy_kl"], "s", ms=9, mfc="none", mec=color, mew=2)
                ax.annotate(f"{method} {name.split('-')[1]}", (u["latency_ratio"], u["proxy_kl"]), fontsize=8,
                            color=color, xytext=(6, -10), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("decode latency, sparse / dense (paired, 95% interval)")
    ax.set_ylabel("KL to the dense model (nats, 95% interval)")
    ax.set_title("SmolLM2-135M on a 2-core CPU: methods on the same axes (squares: uniform seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
