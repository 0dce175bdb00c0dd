"""Profiles: one activation-sparsity setting per decoder layer (a method and its level; None = dense).

A profile is saved as versioned JSON with the identity of the model it was made for, so it is never
applied to another model by accident. Version 2 names a method per layer (engine/methods.py) and,
for the calibrated methods, carries the thresholds its levels resolve to and the calibration they
came from, so it applies the same way anywhere; a ranked method (rsparse) adds a rank per layer.
Version-1 files (alphas only) load as `sparseinfer`.
Loading validates everything and says what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.engine.methods import ProfileError, check_alpha, get_method
from sparseinfer_dse.models.identity import ModelIdentity

FORMAT = "sparseinfer-dse/profile"
VERSION = 2
V1_FORMAT = "sparseinfer-dse/alpha-profile"  # version 1: {"alphas": [...]}, all sparseinfer

Thresholds = Optional[dict[str, float]]  # one layer's: projection -> threshold (None: not resolved)

__all__ = ["FORMAT", "VERSION", "Profile", "ProfileError", "check_alpha", "parse_alpha_list", "levels_repr"]


def _check_thresholds(t: Any, where: str) -> Thresholds:
    if t is None:
        return None
    if not isinstance(t, Mapping) or not t:
        raise ProfileError(f"{where} must be an object of projection -> threshold")
    out = {}
    for k, v in t.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ProfileError(f"{where}.{k} must be a finite number >= 0, not {v!r}")
        out[str(k)] = float(v)
    return out


@dataclass(frozen=True)
class Profile:
    levels: tuple[Optional[float], ...]  # per layer: alpha (sparseinfer) or target sparsity; None = dense
    model: Optional[ModelIdentity] = None
    name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    methods: Union[str, tuple[str, ...]] = "sparseinfer"  # one for every layer, or one per layer
    thresholds: Optional[tuple[Thresholds, ...]] = None  # resolved thresholds per layer (calibrated methods)
    calibration: Optional[dict[str, Any]] = None  # identity of the calibration the thresholds came from
    ranks: Optional[tuple[Optional[int], ...]] = None  # per layer: the low-rank remainder's rank (rsparse)

    def __post_init__(self) -> None:
        if len(self.levels) == 0:
            raise ProfileError("a profile needs at least one layer")
        n = len(self.levels)
        methods = (self.methods,) * n if isinstance(self.methods, str) else tuple(self.methods)
        if len(methods) != n:
            raise ProfileError(f"profile has {n} levels but {len(methods)} methods")
        specs = [get_method(m) for m in methods]
        checked = tuple(s.check_level(a, f"layer {i} {s.knob}") for i, (s, a) in enumerate(zip(specs, self.levels)))
        object.__setattr__(self, "levels", checked)
        object.__setattr__(self, "methods", methods)
        if self.thresholds is not None:
            if len(self.thresholds) != n:
                raise ProfileError(f"profile has {n} levels but thresholds for {len(self.thresholds)} layers")
            thr = tuple(_check_thresholds(t, f"layer {i} thresholds") for i, t in enumerate(self.thresholds))
            object.__setattr__(self, "thresholds", thr if any(t is not None for t in thr) else None)
        if self.ranks is not None:
            if len(self.ranks) != n:
                raise ProfileError(f"profile has {n} levels but ranks for {len(self.ranks)} layers")
            ranks = tuple(s.check_rank(r, f"layer {i} rank") for i, (s, r) in enumerate(zip(specs, self.ranks)))
            object.__setattr__(self, "ranks", ranks if any(r for r in ranks) else None)

    def rank_of(self, layer: int) -> int:
        """The layer's low-rank remainder rank (0: none)."""
        return (self.ranks[layer] or 0) if self.ranks is not None else 0

    @property
    def num_layers(self) -> int:
        return len(self.levels)

    @property
    def method(self) -> str:
        """The profile's method ("mixed" when its layers name different ones)."""
        return self.methods[0] if len(set(self.methods)) == 1 else "mixed"

    @property
    def knob(self) -> str:
        """What the levels mean: "alpha", "sparsity", or "level" for a mixed profile."""
        knobs = {get_method(m).knob for m in self.methods}
        return knobs.pop() if len(knobs) == 1 else "level"

    def with_metrics(self, **metrics: Any) -> "Profile":
        return replace(self, metrics={**self.metrics, **metrics})

    def with_thresholds(self, thresholds: Sequence[Thresholds], calibration: Optional[dict[str, Any]]) -> "Profile":
        return replace(self, thresholds=tuple(thresholds), calibration=calibration)

    # ---- builders -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, num_layers: int, level: float, model: Optional[ModelIdentity] = None,
                method: str = "sparseinfer", rank: Optional[int] = None) -> "Profile":
        """The same level (and rank) on every layer (named uniform-1 for alpha 1.00, uniform-50% for
        sparsity 0.5)."""
        label = f"{level:g}" if get_method(method).knob == "alpha" else f"{level * 100:g}%"
        ranks = None if rank is None else tuple([rank] * num_layers)
        return cls(tuple([level] * num_layers), model, f"uniform-{label}", methods=method, ranks=ranks)

    @classmethod
    def dense(cls, num_layers: int, model: Optional[ModelIdentity] = None, method: str = "sparseinfer") -> "Profile":
        return cls(tuple([None] * num_layers), model, "dense", methods=method)

    @classmethod
    def paper(
        cls, num_layers: int, alpha: float = 1.03, first: Optional[int] = None, model: Optional[ModelIdentity] = None
    ) -> "Profile":
        """The paper's heuristic: `alpha` on the first `first` layers (default half), 1.00 after."""
        n = num_layers // 2 if first is None else first
        if not 0 <= n <= num_layers:
            raise ProfileError(f"first={n} must be between 0 and the number of layers ({num_layers})")
        return cls(tuple([alpha] * n + [1.0] * (num_layers - n)), model, f"paper-{alpha:g}x{n}")

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        layers = []
        for i, (m, a) in enumerate(zip(self.methods, self.levels)):
            row: dict[str, Any] = {"method": m, get_method(m).knob: a}
            if get_method(m).ranked:
                row["rank"] = self.rank_of(i)
            if self.thresholds is not None and self.thresholds[i] is not None:
                row["thresholds"] = self.thresholds[i]
            layers.append(row)
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "model": self.model.to_dict() if self.model else None,
            "num_layers": self.num_layers,
            "method": self.method,
            "layers": layers,
            "calibration": self.calibration,
            "metrics": self.metrics,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile") -> "Profile":
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fmt, version = data.get("format"), data.get("version")
        if fmt == V1_FORMAT and version == 1:
            levels = data.get("alphas")
            if not isinstance(levels, list):
                raise ProfileError(f"{where}: 'alphas' must be a list with one alpha (or null) per layer")
            methods: Any = "sparseinfer"
            thresholds = ranks = None
        elif fmt == FORMAT and version == VERSION:
            layers = data.get("layers")
            if not isinstance(layers, list) or not all(isinstance(r, dict) for r in layers):
                raise ProfileError(f"{where}: 'layers' must be a list with one object per decoder layer")
            try:
                methods = tuple(get_method(r.get("method", "sparseinfer")).name for r in layers)
            except ProfileError as exc:
                raise ProfileError(f"{where}: {exc}") from None
            levels = [r.get(get_method(m).knob) for r, m in zip(layers, methods)]
            has = [r.get("thresholds") for r in layers]
            thresholds = tuple(has) if any(t is not None for t in has) else None
            ranks = tuple(r.get("rank") for r in layers)
        elif fmt in (FORMAT, V1_FORMAT):
            raise ProfileError(f"{where}: unknown profile format version {version!r} (this tool reads 1 and {VERSION})")
        else:
            raise ProfileError(f"{where}: not a profile (format is {fmt!r}, expected {FORMAT!r})")
        if "num_layers" in data and data["num_layers"] != len(levels):
            raise ProfileError(f"{where}: num_layers is {data['num_layers']} but it lists {len(levels)} layers")
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
        calibration = data.get("calibration")
        if calibration is not None and not isinstance(calibration, dict):
            raise ProfileError(f"{where}: 'calibration' must be an object")
        try:
            return cls(tuple(levels), ident, str(data.get("name", "")), metrics, methods, thresholds, calibration,
                       ranks)
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc}") from None

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> "Profile":
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"profile not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, str(path))

    # ---- matching a model -------------------------------------------------------------------
    def check_model(self, identity: ModelIdentity, allow_mismatch: bool = False) -> "Profile":
        """Refuse a profile whose layer count differs, or made for another model unless allowed."""
        if self.num_layers != identity.num_layers:
            raise ProfileError(
                f"profile has {self.num_layers} layers but {identity.name} has {identity.num_layers} decoder layers"
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


def levels_repr(profile: "Profile") -> str:
    """'sparseinfer alpha: 1.030 1.000 dense ...' (or 'teal sparsity: 50% 70% ...', 'rsparse
    sparsity: 50%/r32 ...' with ranks)."""
    pct = profile.knob == "sparsity"
    vals = " ".join("dense" if a is None else (f"{a * 100:.0f}%" if pct else f"{a:.3f}")
                    + (f"/r{profile.rank_of(i)}" if a is not None and profile.rank_of(i) else "")
                    for i, a in enumerate(profile.levels))
    return f"{profile.method} {profile.knob}: {vals}"
