"""Alpha profiles: one SparseInfer alpha per decoder layer (None = the layer runs dense).

A profile is saved as versioned JSON with the identity of the model it was made for, so it is never
applied to another model by accident. Loading validates everything and says what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.identity import ModelIdentity

FORMAT = "sparseinfer-dse/alpha-profile"
VERSION = 1
# Any alpha > 0 is well defined, but past 10 the predictor skips almost nothing (it needs over 91% of
# sign products negative): a larger value is far more likely a typo (103 for 1.03) than a wish.
ALPHA_MAX = 10.0


class ProfileError(UserError):
    """A profile that cannot be used: the message says which field and why."""


def check_alpha(alpha: Any, where: str = "alpha") -> Optional[float]:
    """A valid alpha as float (None stays None = dense layer), or a ProfileError."""
    if alpha is None:
        return None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ProfileError(f"{where} must be a number or null (dense), not {alpha!r}")
    a = float(alpha)
    if not math.isfinite(a):
        raise ProfileError(f"{where} is {a}, must be finite")
    if a <= 0.0:
        raise ProfileError(f"{where} is {a:g}, must be > 0")
    if a > ALPHA_MAX:
        raise ProfileError(f"{where} is {a:g}, out of range (0, {ALPHA_MAX:g}]")
    return a


@dataclass(frozen=True)
class AlphaProfile:
    alphas: tuple[Optional[float], ...]
    model: Optional[ModelIdentity] = None
    name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.alphas) == 0:
            raise ProfileError("a profile needs at least one layer")
        checked = tuple(check_alpha(a, f"alphas[{i}]") for i, a in enumerate(self.alphas))
        object.__setattr__(self, "alphas", checked)

    @property
    def num_layers(self) -> int:
        return len(self.alphas)

    def with_metrics(self, **metrics: Any) -> "AlphaProfile":
        return replace(self, metrics={**self.metrics, **metrics})

    # ---- builders -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, num_layers: int, alpha: float, model: Optional[ModelIdentity] = None) -> "AlphaProfile":
        return cls(tuple([alpha] * num_layers), model, f"uniform-{alpha:g}")

    @classmethod
    def dense(cls, num_layers: int, model: Optional[ModelIdentity] = None) -> "AlphaProfile":
        return cls(tuple([None] * num_layers), model, "dense")

    @classmethod
    def paper(
        cls, num_layers: int, alpha: float = 1.03, first: Optional[int] = None, model: Optional[ModelIdentity] = None
    ) -> "AlphaProfile":
        """The paper's heuristic: `alpha` on the first `first` layers (default half), 1.00 after."""
        n = num_layers // 2 if first is None else first
        if not 0 <= n <= num_layers:
            raise ProfileError(f"first={n} must be between 0 and the number of layers ({num_layers})")
        return cls(tuple([alpha] * n + [1.0] * (num_layers - n)), model, f"paper-{alpha:g}x{n}")

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "model": self.model.to_dict() if self.model else None,
            "num_layers": self.num_layers,
            "alphas": list(self.alphas),
            "metrics": self.metrics,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile") -> "AlphaProfile":
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ProfileError(f"{where}: not an alpha profile (format is {data.get('format')!r}, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ProfileError(f"{where}: unknown profile format version {data.get('version')!r} (this tool reads {VERSION})")
        alphas = data.get("alphas")
        if not isinstance(alphas, list):
            raise ProfileError(f"{where}: 'alphas' must be a list with one alpha (or null) per layer")
        if "num_layers" in data and data["num_layers"] != len(alphas):
            raise ProfileError(f"{where}: num_layers is {data['num_layers']} but 'alphas' has {len(alphas)} entries")
        model = data.get("model")
        ident = None
        if model is not None:
            try:
                ident = ModelIdentity(str(model["name"]), str(model["config_hash"]), int(model["num_layers"]))
            except (KeyError, TypeError, ValueError):
                raise ProfileError(f"{where}: 'model' needs name, config_hash and num_layers") from None
        metrics = data.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise ProfileError(f"{where}: 'metrics' must be an object")
        try:
            return cls(tuple(alphas), ident, str(data.get("name", "")), metrics)
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc}") from None

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> "AlphaProfile":
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"profile not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, str(path))

    # ---- matching a model -------------------------------------------------------------------
    def check_model(self, identity: ModelIdentity, allow_mismatch: bool = False) -> "AlphaProfile":
        """Refuse a profile whose layer count differs, or made for another model unless allowed."""
        if self.num_layers != identity.num_layers:
            raise ProfileError(
                f"profile has {self.num_layers} alphas but {identity.name} has {identity.num_layers} decoder layers"
            )
        if self.model and self.model.config_hash != identity.config_hash and not allow_mismatch:
            raise ProfileError(
                f"profile was made for {self.model.name} ({self.model.config_hash}), not {identity.name} "
                f"({identity.config_hash}); pass --allow-model-mismatch to use it anyway"
            )
        return self


def parse_alpha_list(text: str) -> list[float]:
    """'1.0,1.01,1.03' -> [1.0, 1.01, 1.03], validated."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise ProfileError(f"{part!r} is not a number") from None
        check_alpha(out[-1], f"alpha {part}")
    if not out:
        raise ProfileError("empty alpha list")
    return out


def alphas_repr(alphas: Sequence[Optional[float]]) -> str:
    return " ".join("dense" if a is None else f"{a:.3f}" for a in alphas)
