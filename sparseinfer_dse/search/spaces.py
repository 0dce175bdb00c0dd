"""Search spaces over alpha profiles: per-layer, the paper's early block, or contiguous groups.

Each space turns an optuna trial into one alpha per layer, and turns a known profile back into the
closest parameters so that seeds can be enqueued (the exact seed profile travels in user attrs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.engine.profile import check_alpha


@dataclass(frozen=True)
class AlphaGrid:
    low: float
    high: float
    step: float

    def snap(self, a: float) -> float:
        """Nearest grid value inside [low, high]."""
        a = min(max(a, self.low), self.high)
        return round(self.low + round((a - self.low) / self.step) * self.step, 6)

    def suggest(self, trial: Any, name: str) -> float:
        return round(trial.suggest_float(name, self.low, self.high, step=self.step), 6)


def parse_alpha_grid(text: str, step: float) -> AlphaGrid:
    """'0.95:1.10' (or '0.95,1.10') with a step -> AlphaGrid, validated."""
    parts = text.replace(",", ":").split(":")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"--alpha-range must look like 0.95:1.10, not {text!r}") from None
    check_alpha(low, "--alpha-range low")
    check_alpha(high, "--alpha-range high")
    if not low < high:
        raise UserError(f"--alpha-range low ({low}) must be below high ({high})")
    if not 0 < step <= high - low:
        raise UserError(f"--alpha-step must be in (0, {high - low:g}], not {step}")
    n = (high - low) / step
    if abs(n - round(n)) > 1e-6:
        raise UserError(f"--alpha-range {low}:{high} is not a whole number of --alpha-step {step}")
    return AlphaGrid(low, high, step)


class Space:
    name = "space"

    def __init__(self, num_layers: int, grid: AlphaGrid) -> None:
        self.n = num_layers
        self.grid = grid

    def suggest(self, trial: Any) -> tuple[float, ...]:
        raise NotImplementedError

    def params_for(self, alphas: Sequence[Optional[float]]) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        g = self.grid
        return f"{self.name}[{g.low:g}:{g.high:g}/{g.step:g}]x{self.n}"


class PerLayer(Space):
    name = "per-layer"

    def _key(self, i: int) -> str:
        return f"a{i:03d}"

    def suggest(self, trial: Any) -> tuple[float, ...]:
        return tuple(self.grid.suggest(trial, self._key(i)) for i in range(self.n))

    def params_for(self, alphas):
        return {self._key(i): self.grid.snap(1.0 if a is None else a) for i, a in enumerate(alphas)}


class EarlyBlock(Space):
    """The paper's shape: `alpha` on the first `first` layers, 1.00 after."""

    name = "early-block"

    def suggest(self, trial: Any) -> tuple[float, ...]:
        alpha = self.grid.suggest(trial, "alpha")
        first = trial.suggest_int("first", 0, self.n)
        return tuple([alpha] * first + [1.0] * (self.n - first))

    def params_for(self, alphas):
        vals = [1.0 if a is None else a for a in alphas]
        first = next((i for i in range(self.n, 0, -1) if vals[i - 1] != 1.0), 0)
        alpha = vals[0] if first else 1.0
        return {"alpha": self.grid.snap(alpha), "first": first}


class Groups(Space):
    """K contiguous groups of layers, one alpha each."""

    name = "groups"

    def __init__(self, num_layers: int, grid: AlphaGrid, k: int) -> None:
        super().__init__(num_layers, grid)
        if not 1 <= k <= num_layers:
            raise UserError(f"groups:K needs 1 <= K <= {num_layers} (the number of layers), not {k}")
        self.k = k
        self.groups = [list(map(int, g)) for g in np.array_split(np.arange(num_layers), k)]

    def describe(self) -> str:
        return super().describe().replace("groups", f"groups:{self.k}")

    def suggest(self, trial: Any) -> tuple[float, ...]:
        alphas = [1.0] * self.n
        for j, g in enumerate(self.groups):
            a = self.grid.suggest(trial, f"g{j:02d}")
            for i in g:
                alphas[i] = a
        return tuple(alphas)

    def params_for(self, alphas):
        vals = [1.0 if a is None else a for a in alphas]
        return {f"g{j:02d}": self.grid.snap(float(np.mean([vals[i] for i in g]))) for j, g in enumerate(self.groups)}


def make_space(text: str, num_layers: int, grid: AlphaGrid) -> Space:
    if text == "per-layer":
        return PerLayer(num_layers, grid)
    if text == "early-block":
        return EarlyBlock(num_layers, grid)
    if text.startswith("groups:"):
        try:
            k = int(text.split(":", 1)[1])
        except ValueError:
            raise UserError(f"--space groups:K needs an integer K, not {text!r}") from None
        return Groups(num_layers, grid, k)
    raise UserError(f"--space must be per-layer, early-block or groups:K, not {text!r}")
