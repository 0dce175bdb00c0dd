"""The one profile form a trial stores: `Profile.to_dict()` in its user attrs, read back here.

Trials of studies made before the profile was stored whole kept a bare `alphas` list (and seeds a
`seed_alphas` list); they are still read, so such a study resumes and its outputs are rewritten.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from sparseinfer_dse.engine.methods import RANKED
from sparseinfer_dse.engine.profile import Profile

PROFILE = "profile"  # the profile the trial evaluated
SEED_PROFILE = "seed_profile"  # an enqueued seed's exact profile (the grid parameters only approximate it)
LEGACY = {PROFILE: "alphas", SEED_PROFILE: "seed_alphas"}


def _read(attrs: Mapping[str, Any], key: str) -> Optional[Profile]:
    if key in attrs:
        return Profile.from_dict(attrs[key], f"trial attribute {key!r}")
    old = attrs.get(LEGACY[key])
    return None if old is None else Profile(tuple(old))


def trial_profile(attrs: Mapping[str, Any]) -> Optional[Profile]:
    """The profile a trial evaluated (None while it has not chosen one)."""
    return _read(attrs, PROFILE)


def seed_profile(attrs: Mapping[str, Any]) -> Optional[Profile]:
    """The exact profile of an enqueued seed trial (None for a sampled trial)."""
    return _read(attrs, SEED_PROFILE)


LEVEL_PREFIXES = ("alpha_", "sparsity_", "level_")  # per-layer columns: alpha_003, sparsity_003 (mixed: level_)


def level_columns(profile: Optional[Profile]) -> dict[str, Optional[float]]:
    """The profile's per-layer levels as table columns named after its knob (alpha_000, sparsity_000...),
    and its ranks (rank_000...) for a method with ranks (0 too: an all-zero profile stores no ranks)."""
    if profile is None:
        return {}
    out: dict[str, Optional[float]] = {f"{profile.knob}_{i:03d}": a for i, a in enumerate(profile.levels)}
    if profile.ranks is not None or profile.method in RANKED:  # rsparse: each layer's low-rank remainder
        out.update({f"rank_{i:03d}": profile.rank_of(i) for i in range(profile.num_layers)})
    return out


def level_column_names(columns: Any) -> list[str]:
    """The per-layer level columns among `columns`, in layer order."""
    return sorted(c for c in columns if isinstance(c, str) and c.startswith(LEVEL_PREFIXES) and c[-3:].isdigit())


def stored_keys() -> tuple[str, ...]:
    """User attrs that hold a profile (not shown as trials.csv columns: the alpha_NNN columns are)."""
    return (*LEGACY, *LEGACY.values())
