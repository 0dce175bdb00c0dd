"""Search spaces over alpha profiles: per-layer, the paper's early block, or contiguous groups.

Each space turns an optuna trial into an AlphaProfile (one alpha per layer), and turns a known
profile back into the closest parameters so that seeds can be enqueued (the exact seed profile
travels in user attrs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from sparseinfer_dse.engine.profile import AlphaProfile, ProfileError, check_alpha
from sparseinfer_dse.errors import OptionError


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
        raise OptionError("alpha_range", f"{{alpha_range}} must look like 0.95:1.10, not {text!r}") from None
    for end, value in (("low", low), ("high", high)):
        try:
            check_alpha(value, end)
        except ProfileError as exc:
            raise OptionError("alpha_range", f"{{alpha_range}} {exc}") from None
    if not low < high:
        raise OptionError("alpha_range", f"{{alpha_range}} low ({low}) must be below high ({high})")
    if not 0 < step <= high - low:
        raise OptionError("alpha_step", f"{{alpha_step}} must be in (0, {high - low:g}], not {step}")
    n = (high - low) / step
    if abs(n - round(n)) > 1e-6:
        raise OptionError("alpha_step", f"{{alpha_range}} {low}:{high} is not a whole number of {{alpha_step}} {step}")
    return AlphaGrid(low, high, step)


class Space:
    name = "space"

    def __init__(self, num_layers: int, grid: AlphaGrid) -> None:
        self.n = num_layers
        self.grid = grid

    def suggest(self, trial: Any) -> AlphaProfile:
        """The trial's profile (named after the space)."""
        return AlphaProfile(self._alphas(trial), name=self.describe())

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        raise NotImplementedError

    def params_for(self, profile: AlphaProfile) -> dict[str, Any]:
        """The grid parameters closest to `profile` (dense layers count as 1.00)."""
        return self._params([1.0 if a is None else a for a in profile.alphas])

    def _params(self, vals: list[float]) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        g = self.grid
        return f"{self.name}[{g.low:g}:{g.high:g}/{g.step:g}]x{self.n}"


class PerLayer(Space):
    name = "per-layer"

    def _key(self, i: int) -> str:
        return f"a{i:03d}"

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        return tuple(self.grid.suggest(trial, self._key(i)) for i in range(self.n))

    def _params(self, vals):
        return {self._key(i): self.grid.snap(a) for i, a in enumerate(vals)}


class EarlyBlock(Space):
    """The paper's shape: `alpha` on the first `first` layers, 1.00 after."""

    name = "early-block"

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        alpha = self.grid.suggest(trial, "alpha")
        first = trial.suggest_int("first", 0, self.n)
        return tuple([alpha] * first + [1.0] * (self.n - first))

    def _params(self, vals):
        first = next((i for i in range(self.n, 0, -1) if vals[i - 1] != 1.0), 0)
        alpha = vals[0] if first else 1.0
        return {"alpha": self.grid.snap(alpha), "first": first}


class Groups(Space):
    """K contiguous groups of layers, one alpha each."""

    name = "groups"

    def __init__(self, num_layers: int, grid: AlphaGrid, k: int) -> None:
        super().__init__(num_layers, grid)
        if not 1 <= k <= num_layers:
            raise OptionError("space", f"{{space}} groups:K needs 1 <= K <= {num_layers} (the number of layers), not {k}")
        self.k = k
        self.groups = [list(map(int, g)) for g in np.array_split(np.arange(num_layers), k)]

    def describe(self) -> str:
        return super().describe().replace("groups", f"groups:{self.k}")

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        alphas = [1.0] * self.n
        for j, g in enumerate(self.groups):
            a = self.grid.suggest(trial, f"g{j:02d}")
            for i in g:
                alphas[i] = a
        return tuple(alphas)

    def _params(self, vals):
        return {f"g{j:02d}": self.grid.snap(float(np.mean([vals[i] for i in g]))) for j, g in enumerate(self.groups)}


def parse_space(text: str) -> tuple[str, Optional[int]]:
    """'per-layer' -> ('per-layer', None), 'groups:4' -> ('groups', 4): checked before the model loads."""
    if text in ("per-layer", "early-block"):
        return text, None
    if text.startswith("groups:"):
        try:
            return "groups", int(text.split(":", 1)[1])
        except ValueError:
            raise OptionError("space", f"{{space}} groups:K needs an integer K, not {text!r}") from None
    raise OptionError("space", f"{{space}} must be per-layer, early-block or groups:K, not {text!r}")


def make_space(text: str, num_layers: int, grid: AlphaGrid) -> Space:
    kind, k = parse_space(text)
    if kind == "per-layer":
        return PerLayer(num_layers, grid)
    if kind == "early-block":
        return EarlyBlock(num_layers, grid)
    return Groups(num_layers, grid, k)
