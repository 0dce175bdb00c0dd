"""A Fig. 3-style plot: per-layer precision and recall of the sign predictor, one line per alpha."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from sparseinfer_dse.atomic import replaced


def plot_layers(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharex=True)
    for alpha, grp in df.groupby("alpha"):
        grp = grp.sort_values("layer")
        axes[0].plot(grp["layer"], grp["precision"], marker="o", ms=3, label=f"alpha {alpha:g}")
        axes[1].plot(grp["layer"], grp["recall"], marker="o", ms=3, label=f"alpha {alpha:g}")
        axes[2].plot(grp["layer"], grp["predicted_sparsity"], marker="o", ms=3, label=f"predicted, alpha {alpha:g}")
    ideal = df.groupby("layer")["ideal_sparsity"].first()
    axes[2].plot(ideal.index, ideal.values, "k--", label="ideal (actual zeros)")
    for ax, name in zip(axes, ("precision", "recall", "sparsity")):
        ax.set_xlabel("decoder layer")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with replaced(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
