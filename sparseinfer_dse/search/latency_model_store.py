"""A search model's calibrated latency model, measured once and cached.

`bench latency-model` and `search --latency-fidelity staged` need the same model for the same
setting: it is keyed by the model's weights and config, the method and its calibration, the level
grid, the latency workload, the device, dtype, backend and thread counts, and stored as JSON under
`$SPARSEINFER_DSE_CACHE/latency_models`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.engine.decode import Workload
from sparseinfer_dse.engine.latency_model import LatencyModel, build_latency_model, runs_needed
from sparseinfer_dse.eval.baseline_cache import weights_fingerprint
from sparseinfer_dse.eval.offline_tasks import cache_root
from sparseinfer_dse.machine import device_name, thread_counts
from sparseinfer_dse.search.model_setup import SearchModel
from sparseinfer_dse.search.options import SearchOptions

ALGORITHM = 1  # bump when build_latency_model changes what it measures
GRID_POINTS = 5  # levels a search's latency model measures, evenly spaced over its range


def grid_levels(opts: SearchOptions, method: str, points: int) -> list[float]:
    grid = opts.grid_for(method)
    return [round(float(a), 6) for a in np.linspace(grid.low, grid.high, points)]


def grid_ranks(opts: SearchOptions, method: str, points: int) -> list[int]:
    """A ranked method's remainder ranks for the model: `points` ranks evenly spaced on the study's
    rank grid (snapped to its steps, 0 always included); none for other methods."""
    grid = opts.grid_for(method)
    if not grid.ranked:
        return []
    return sorted({0, *(grid.snap_rank(round(r)) for r in np.linspace(grid.rank_low, grid.rank_high, points))})


def _path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / "latency_models" / f"{key['method']}-{digest}.json"


def _load(path: Path, key: dict[str, Any]) -> Optional[LatencyModel]:
    try:
        data = json.loads(path.read_text())
        return LatencyModel.from_dict(data["model"]) if data.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latency_model(sm: SearchModel, opts: SearchOptions, workload: Workload, *, points: int = GRID_POINTS,
                  repeats: Optional[int] = None, use_cache: bool = True,
                  say: Callable[[str], None] = lambda m: None, progress: bool = True) -> tuple[LatencyModel, Path]:
    """The latency model of `sm` over the study's level grid: from the cache, else measured and stored."""
    lm, handle, method = sm.lm, sm.handle, sm.method
    levels, ranks = grid_levels(opts, method, points), grid_ranks(opts, method, points)
    repeats = repeats or opts.latency_repeats
    where = {"device": device_name(lm.device), "dtype": str(lm.dtype).replace("torch.", ""), "backend": handle.backend,
             "threads": thread_counts(), "model": opts.model}
    key = {"algorithm": ALGORITHM, "config_hash": lm.identity.config_hash, "weights": weights_fingerprint(lm.model),
           "method": method, "thresholds": sm.thresholds_key, "grid": levels, "tokens": opts.latency_tokens,
           "prompts": opts.latency_prompts, "repeats": repeats, **where, **({"ranks": ranks} if ranks else {})}
    path = _path(key)
    model = _load(path, key) if use_cache else None
    if model is not None:
        say(f"latency model from the cache ({path})")
        return model, path
    say(f"measuring the latency model: {len(handle.layers)} layers x {len(levels)} levels + dense"
        f"{f' + {len(ranks) - 1} ranks' if ranks else ''}, {repeats} rounds")
    from tqdm.auto import tqdm

    with tqdm(total=runs_needed(len(levels), len(workload.runs), repeats, max(0, len(ranks) - 1)),
              desc="latency model", unit="run", leave=False, disable=not progress) as bar:
        model = build_latency_model(handle, workload, levels, method=method, ranks=ranks, repeats=repeats,
                                    info=where, progress=bar.update)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"key": key, "model": model.to_dict()}, indent=1) + "\n")
    return model, path
