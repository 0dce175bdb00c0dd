"""The activation-sparsity methods a profile can name, and the knob each one takes per layer.

- `sparseinfer`: ReLU / FATReLU models (or decode-time ReLU); knob alpha (Eq. 2's sign-bit margin).
- `cats`: the intermediate act(gate) is zeroed where |act(gate)| falls below a calibrated threshold;
  the gate is computed in full, up and down only for the kept rows. Knob: the target sparsity.
- `teal`: the inputs of the MLP's linear layers are zeroed where their magnitude falls below a
  calibrated threshold (the MLP input for gate and up, the intermediate for down); each product reads
  only the weight rows of kept inputs. Knob: the target sparsity, the same for the three projections.
- `wisparse`: like teal, but a channel's score is |x_j| * ||W[:, j]||_2 (weight-aware), and the
  layer's target is split between gate, up and down to minimise the block's output error on
  calibration data. Knob: the layer's target sparsity (the mean over its three projections).
- `rsparse` (R-Sparse): channels scored as wisparse's, each projection skipping the layer's target
  fraction; the skipped channels are not dropped but go through a rank-r SVD approximation of the
  weight (y = W (x * m) + U_r S_r V_r^T (x * (1 - m))). Knobs: the target sparsity and the rank r
  (0 = no remainder), per layer.

Thresholds for a target sparsity come from calibration (engine/thresholds.py): the method's score
distribution on calibration text, per layer and projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from sparseinfer_dse.errors import UserError

# Any alpha > 0 is well defined, but past 10 the predictor skips almost nothing (it needs over 91% of
# sign products negative): a larger value is far more likely a typo (103 for 1.03) than a wish.
ALPHA_MAX = 10.0
# A sparsity of 1 would skip the whole MLP: the calibrated quantiles stop short of it.
SPARSITY_MAX = 0.99


class ProfileError(UserError):
    """A profile that cannot be used: the message says which field and why."""


@dataclass(frozen=True)
class Method:
    name: str
    knob: str  # "alpha" or "sparsity": what a profile's per-layer level means
    projections: tuple[str, ...]  # calibrated thresholds, one per projection (none for sparseinfer)
    for_silu: bool  # made for models without exact zeros (SiLU/GELU); sparseinfer needs ReLU
    ranked: bool = False  # takes a per-layer rank as well (rsparse's low-rank remainder)

    @property
    def calibrated(self) -> bool:
        return bool(self.projections)

    def check_level(self, level: Any, where: str = "level") -> Optional[float]:
        """A valid level as float (None = the layer runs dense), or a ProfileError."""
        if level is None:
            return None
        if isinstance(level, bool) or not isinstance(level, (int, float)):
            raise ProfileError(f"{where} must be a number or null (dense), not {level!r}")
        v = float(level)
        if not math.isfinite(v):
            raise ProfileError(f"{where} is {v}, must be finite")
        if self.knob == "alpha":
            if v <= 0.0:
                raise ProfileError(f"{where} is {v:g}, must be > 0")
            if v > ALPHA_MAX:
                raise ProfileError(f"{where} is {v:g}, out of range (0, {ALPHA_MAX:g}]")
        elif not 0.0 <= v <= SPARSITY_MAX:
            raise ProfileError(f"{where} is {v:g}: a {self.name} sparsity must be in [0, {SPARSITY_MAX:g}]")
        return v

    def check_rank(self, rank: Any, where: str = "rank") -> Optional[int]:
        """A valid rank as int (None = no remainder, as 0), or a ProfileError (also for a method without ranks)."""
        if rank is None:
            return None
        if not self.ranked:
            raise ProfileError(f"{where}: {self.name} takes no rank (only {', '.join(RANKED)} does)")
        if isinstance(rank, bool) or not isinstance(rank, (int, float)) or rank != int(rank) or rank < 0:
            raise ProfileError(f"{where} must be a whole number >= 0 (0 = no low-rank remainder), not {rank!r}")
        return int(rank)


METHODS: dict[str, Method] = {
    "sparseinfer": Method("sparseinfer", "alpha", (), for_silu=False),
    "cats": Method("cats", "sparsity", ("act",), for_silu=True),
    "teal": Method("teal", "sparsity", ("gate", "up", "down"), for_silu=True),
    "wisparse": Method("wisparse", "sparsity", ("gate", "up", "down"), for_silu=True),
    "rsparse": Method("rsparse", "sparsity", ("gate", "up", "down"), for_silu=True, ranked=True),
}
RANKED = ("rsparse",)
SILU_METHODS = tuple(n for n, m in METHODS.items() if m.for_silu)


def get_method(name: Any) -> Method:
    if name not in METHODS:
        raise ProfileError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def check_alpha(alpha: Any, where: str = "alpha") -> Optional[float]:
    """A valid alpha (None stays None = dense layer), or a ProfileError."""
    return METHODS["sparseinfer"].check_level(alpha, where)
