"""The one profile form a trial stores: `AlphaProfile.to_dict()` in its user attrs, read back here.

Trials of studies made before the profile was stored whole kept a bare `alphas` list (and seeds a
`seed_alphas` list); they are still read, so such a study resumes and its outputs are rewritten.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from sparseinfer_dse.engine.profile import AlphaProfile

PROFILE = "profile"  # the profile the trial evaluated
SEED_PROFILE = "seed_profile"  # an enqueued seed's exact profile (the grid parameters only approximate it)
LEGACY = {PROFILE: "alphas", SEED_PROFILE: "seed_alphas"}


def _read(attrs: Mapping[str, Any], key: str) -> Optional[AlphaProfile]:
    if key in attrs:
        return AlphaProfile.from_dict(attrs[key], f"trial attribute {key!r}")
    old = attrs.get(LEGACY[key])
    return None if old is None else AlphaProfile(tuple(old))


def trial_profile(attrs: Mapping[str, Any]) -> Optional[AlphaProfile]:
    """The profile a trial evaluated (None while it has not chosen one)."""
    return _read(attrs, PROFILE)


def seed_profile(attrs: Mapping[str, Any]) -> Optional[AlphaProfile]:
    """The exact profile of an enqueued seed trial (None for a sampled trial)."""
    return _read(attrs, SEED_PROFILE)


def stored_keys() -> tuple[str, ...]:
    """User attrs that hold a profile (not shown as trials.csv columns: the alpha_NNN columns are)."""
    return (*LEGACY, *LEGACY.values())
