"""Search spaces over profiles of one method: per-layer, the paper's early block, or contiguous groups.

Each space turns an optuna trial into a Profile (one level per layer: an alpha for sparseinfer,
a target sparsity for the calibrated methods), turns a known profile back into the closest
parameters so that seeds can be enqueued (the exact seed profile travels in user attrs), and
names the method's seeds: uniform 1.00 and the paper's 1.03 early block for sparseinfer; dense and
the uniform allocations at 30 / 50 / 70% (the methods' published settings) for the others.
A ranked method (rsparse) pairs every level parameter with a rank parameter (`<key>_rank`, an
integer on the rank grid) that applies to the same layers; its uniform seeds take the grid's
middle rank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from sparseinfer_dse.engine.methods import get_method
from sparseinfer_dse.engine.profile import Profile, ProfileError
from sparseinfer_dse.errors import OptionError

UNIFORM_SEEDS = (0.3, 0.5, 0.7)  # the calibrated methods' published uniform settings


@dataclass(frozen=True)
class LevelGrid:
    """The grid a space suggests levels on, for one method (`knob` alpha or sparsity)."""

    low: float
    high: float
    step: float
    method: str = "sparseinfer"
    rank_low: int = 0  # ranked methods: the rank grid rank_low..rank_high by rank_step (step 0: no ranks)
    rank_high: int = 0
    rank_step: int = 0

    @property
    def ranked(self) -> bool:
        return self.rank_step > 0

    @property
    def mid_rank(self) -> int:
        """The rank grid's middle value (the uniform seeds' rank)."""
        n = (self.rank_high - self.rank_low) // self.rank_step
        return self.rank_low + (n // 2) * self.rank_step

    def snap_rank(self, r: int) -> int:
        r = min(max(r, self.rank_low), self.rank_high)
        return self.rank_low + round((r - self.rank_low) / self.rank_step) * self.rank_step

    def suggest_rank(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.rank_low, self.rank_high, step=self.rank_step)

    @property
    def knob(self) -> str:
        return get_method(self.method).knob

    @property
    def base(self) -> float:
        """The level a layer left out of a shape gets: alpha 1.00, or no sparsity."""
        return 1.0 if self.knob == "alpha" else 0.0

    def snap(self, a: float) -> float:
        """Nearest grid value inside [low, high]."""
        a = min(max(a, self.low), self.high)
        return round(self.low + round((a - self.low) / self.step) * self.step, 6)

    def suggest(self, trial: Any, name: str) -> float:
        return round(trial.suggest_float(name, self.low, self.high, step=self.step), 6)


def parse_level_grid(text: str, step: float, method: str = "sparseinfer") -> LevelGrid:
    """'0.95:1.10' (or '0.95,1.10') with a step -> LevelGrid for `method`, validated. The error names
    the option it came from: alpha_range/alpha_step for sparseinfer, sparsity_range/sparsity_step else."""
    spec = get_method(method)
    rng, stp = f"{spec.knob}_range", f"{spec.knob}_step"
    parts = text.replace(",", ":").split(":")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        example = "0.95:1.10" if spec.knob == "alpha" else "0.0:0.9"
        raise OptionError(rng, f"{{{rng}}} must look like {example}, not {text!r}") from None
    for end, value in (("low", low), ("high", high)):
        try:
            spec.check_level(value, end)
        except ProfileError as exc:
            raise OptionError(rng, f"{{{rng}}} {exc}") from None
    if not low < high:
        raise OptionError(rng, f"{{{rng}}} low ({low}) must be below high ({high})")
    if not 0 < step <= high - low:
        raise OptionError(stp, f"{{{stp}}} must be in (0, {high - low:g}], not {step}")
    n = (high - low) / step
    if abs(n - round(n)) > 1e-6:
        raise OptionError(stp, f"{{{rng}}} {low}:{high} is not a whole number of {{{stp}}} {step}")
    return LevelGrid(low, high, step, method)


def parse_rank_grid(grid: LevelGrid, text: str, step: int) -> LevelGrid:
    """`grid` with the rank grid '0:64' by `step` (ranked methods only; others are returned as they are)."""
    if not get_method(grid.method).ranked:
        return grid
    try:
        low, high = (int(p) for p in text.replace(",", ":").split(":"))
    except ValueError:
        raise OptionError("rank_range", f"{{rank_range}} must look like 0:64 (whole numbers), not {text!r}") from None
    if not 0 <= low < high:
        raise OptionError("rank_range", f"{{rank_range}} needs 0 <= low < high, not {text!r}")
    if not isinstance(step, int) or not 0 < step <= high - low or (high - low) % step:
        raise OptionError("rank_step", f"{{rank_step}} must be a whole number that divides {{rank_range}} {text}, "
                          f"not {step!r}")
    return replace(grid, rank_low=low, rank_high=high, rank_step=step)


class Space:
    name = "space"

    def __init__(self, num_layers: int, grid: LevelGrid) -> None:
        self.n = num_layers
        self.grid = grid

    @property
    def method(self) -> str:
        return self.grid.method

    def suggest(self, trial: Any) -> Profile:
        """The trial's profile (named after the space)."""
        levels = self._alphas(trial)
        ranks = self._ranks(trial, levels) if self.grid.ranked else None
        return Profile(levels, name=self.describe(), methods=self.method, ranks=ranks)

    def seeds(self) -> dict[str, Profile]:
        """The profiles every study of this method starts with, by name."""
        if self.grid.knob == "alpha":
            return {"uniform-1.00": Profile.uniform(self.n, 1.0), "paper-1.03": Profile.paper(self.n, 1.03)}
        out = {"dense": Profile.dense(self.n, method=self.method)}
        rank = self.grid.mid_rank if self.grid.ranked else None
        for s in UNIFORM_SEEDS:
            out[f"uniform-{s * 100:.0f}%"] = Profile.uniform(self.n, s, method=self.method, rank=rank)
        return out

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        raise NotImplementedError

    def _ranks(self, trial: Any, levels: tuple[float, ...]) -> tuple[int, ...]:
        """Each layer's rank, from the rank parameter paired with the level parameter it took."""
        raise NotImplementedError

    def params_for(self, profile: Profile) -> dict[str, Any]:
        """The grid parameters closest to `profile` (dense layers count as the base level and rank 0)."""
        out = self._params([self.grid.base if a is None else a for a in profile.levels])
        if self.grid.ranked:
            ranks = [profile.rank_of(i) for i in range(self.n)]
            out.update({f"{key}_rank": self.grid.snap_rank(round(float(np.mean([ranks[i] for i in layers]))))
                        for key, layers in self._slots(out).items()})
        return out

    def _params(self, vals: list[float]) -> dict[str, Any]:
        raise NotImplementedError

    def _slots(self, params: dict[str, Any]) -> dict[str, list[int]]:
        """Level parameter -> the layers it sets (what its paired rank parameter applies to)."""
        raise NotImplementedError

    def describe(self) -> str:
        g = self.grid
        what = "" if g.method == "sparseinfer" else f"{g.method}:"
        ranks = f",rank[{g.rank_low}:{g.rank_high}/{g.rank_step}]" if g.ranked else ""
        return f"{what}{self.name}[{g.low:g}:{g.high:g}/{g.step:g}{ranks}]x{self.n}"


class PerLayer(Space):
    name = "per-layer"

    def _key(self, i: int) -> str:
        return f"{self.grid.knob[0]}{i:03d}"

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        return tuple(self.grid.suggest(trial, self._key(i)) for i in range(self.n))

    def _params(self, vals):
        return {self._key(i): self.grid.snap(a) for i, a in enumerate(vals)}

    def _slots(self, params):
        return {self._key(i): [i] for i in range(self.n)}

    def _ranks(self, trial, levels):
        return tuple(self.grid.suggest_rank(trial, f"{self._key(i)}_rank") for i in range(self.n))


class EarlyBlock(Space):
    """The paper's shape: `alpha` on the first `first` layers, 1.00 after. For a sparsity method:
    one level on the first `first` layers and another (`rest`) after."""

    name = "early-block"

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        level = self.grid.suggest(trial, self.grid.knob)
        first = trial.suggest_int("first", 0, self.n)
        rest = self.grid.base if self.grid.knob == "alpha" else self.grid.suggest(trial, "rest")
        return tuple([level] * first + [rest] * (self.n - first))

    def _params(self, vals):
        rest = self.grid.base if self.grid.knob == "alpha" else vals[-1]
        first = next((i for i in range(self.n, 0, -1) if vals[i - 1] != rest), 0)
        out = {self.grid.knob: self.grid.snap(vals[0] if first else rest), "first": first}
        if self.grid.knob != "alpha":
            out["rest"] = self.grid.snap(rest)
        return out

    def _slots(self, params):
        first = params["first"]
        return {self.grid.knob: list(range(first)) or [0], "rest": list(range(first, self.n)) or [self.n - 1]}

    def _ranks(self, trial, levels):
        first = trial.params["first"]
        head = self.grid.suggest_rank(trial, f"{self.grid.knob}_rank")
        rest = self.grid.suggest_rank(trial, "rest_rank")
        return tuple([head] * first + [rest] * (self.n - first))


class Groups(Space):
    """K contiguous groups of layers, one alpha each."""

    name = "groups"

    def __init__(self, num_layers: int, grid: LevelGrid, k: int) -> None:
        super().__init__(num_layers, grid)
        if not 1 <= k <= num_layers:
            raise OptionError("space", f"{{space}} groups:K needs 1 <= K <= {num_layers} (the number of layers), not {k}")
        self.k = k
        self.groups = [list(map(int, g)) for g in np.array_split(np.arange(num_layers), k)]

    def describe(self) -> str:
        return super().describe().replace("groups", f"groups:{self.k}")

    def _alphas(self, trial: Any) -> tuple[float, ...]:
        alphas = [self.grid.base] * self.n
        for j, g in enumerate(self.groups):
            a = self.grid.suggest(trial, f"g{j:02d}")
            for i in g:
                alphas[i] = a
        return tuple(alphas)

    def _params(self, vals):
        return {f"g{j:02d}": self.grid.snap(float(np.mean([vals[i] for i in g]))) for j, g in enumerate(self.groups)}

    def _slots(self, params):
        return {f"g{j:02d}": g for j, g in enumerate(self.groups)}

    def _ranks(self, trial, levels):
        ranks = [0] * self.n
        for j, g in enumerate(self.groups):
            r = self.grid.suggest_rank(trial, f"g{j:02d}_rank")
            for i in g:
                ranks[i] = r
        return tuple(ranks)


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


def make_space(text: str, num_layers: int, grid: LevelGrid) -> Space:
    kind, k = parse_space(text)
    if kind == "per-layer":
        return PerLayer(num_layers, grid)
    if kind == "early-block":
        return EarlyBlock(num_layers, grid)
    return Groups(num_layers, grid, k)
