"""`lowrank_factors(lm, max_rank)`: rsparse's SVD factors for a loaded model, computed once and cached.

Every search worker, `verify` and each later run of the same model need the same factors; for a
7-8B model the SVDs take minutes, so they are stored under `$SPARSEINFER_DSE_CACHE/lowrank`
(default `~/.cache/sparseinfer-dse/lowrank`), keyed by the model's weights and config, its dtype
and the rank.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import torch

from sparseinfer_dse.atomic import replaced
from sparseinfer_dse.engine.lowrank import EXACT_UP_TO, OVERSAMPLE, PROJECTIONS, LowRankFactors, compute_factors
from sparseinfer_dse.eval.baseline_cache import weights_fingerprint
from sparseinfer_dse.eval.offline_tasks import cache_root

ALGORITHM = 1  # bump when svd_factors changes


def lowrank_dir() -> Path:
    return cache_root() / "lowrank"


def _key(lm: Any, max_rank: int) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "config_hash": lm.identity.config_hash, "weights": weights_fingerprint(lm.model),
            "dtype": str(lm.dtype), "max_rank": int(max_rank), "exact_up_to": EXACT_UP_TO, "oversample": OVERSAMPLE}


def _path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return lowrank_dir() / f"svd-r{key['max_rank']}-{digest}.pt"


def _load(path: Path, key: dict[str, Any]) -> Optional[LowRankFactors]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if json.loads(data["key"]) != key:
            return None
        layers = [{p: (a, u) for p, a, u in zip(PROJECTIONS, row["a"], row["u"])} for row in data["layers"]]
        return LowRankFactors(int(key["max_rank"]), layers)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError):
        return None


def _save(path: Path, key: dict[str, Any], factors: LowRankFactors) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = [{"a": [f[p][0] for p in PROJECTIONS], "u": [f[p][1] for p in PROJECTIONS]} for f in factors.factors]
    with replaced(path) as tmp:
        torch.save({"key": json.dumps(key), "layers": layers}, tmp)


def lowrank_factors(lm: Any, max_rank: int, *, progress: bool = True, use_cache: bool = True,
                    say: Any = None) -> LowRankFactors:
    """Every layer's gate/up/down SVD factors at `max_rank` for the LoadedModel `lm`: from the cache
    when it holds them, else computed (with a progress bar) and, with `use_cache`, stored."""
    key = _key(lm, max_rank)
    path = _path(key)
    if use_cache and path.is_file():
        factors = _load(path, key)
        if factors is not None:
            return factors
    from tqdm.auto import tqdm

    with tqdm(total=len(lm.mlps), desc=f"SVD of the MLP weights (rank {max_rank})", unit="layer",
              disable=not progress, leave=False) as bar:
        factors = compute_factors(lm.mlps, max_rank, progress=bar.update)
    if use_cache:
        _save(path, key, factors)
    if say is not None:
        say(f"computed rank-{max_rank} SVD factors of {len(lm.mlps)} layers: cached in {path}")
    return factors
