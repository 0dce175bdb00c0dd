"""`calibrate(lm, method)`: a method's ThresholdTable for a loaded model, computed once and cached.

The text is GSM8K train questions with their answers by default (skipping the first
PROXY_SKIP samples, which the KL proxy scores on, so thresholds are never fitted on the proxy's
own text), run through the dense model with every position's MLP input recorded. The table lives
under `$SPARSEINFER_DSE_CACHE/thresholds` (default `~/.cache/sparseinfer-dse/thresholds`), keyed by
the model's weights and config, the method, the text and the token budget.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from sparseinfer_dse.atomic import replaced
from sparseinfer_dse.engine.methods import get_method
from sparseinfer_dse.engine.thresholds import GRID, ThresholdTable, build_table, capture_mlp_inputs
from sparseinfer_dse.eval.baseline_cache import weights_fingerprint
from sparseinfer_dse.eval.calibration import encode_calibration, load_calibration
from sparseinfer_dse.eval.offline_tasks import cache_root

ALGORITHM = 1  # bump when the scores, the quantile grid or the greedy split change
PROXY_SKIP = 1000  # GSM8K train samples left to the proxy (it reads the first calibration_samples)
DEFAULT_SAMPLES = 64
DEFAULT_TOKENS = 4096


def threshold_dir() -> Path:
    return cache_root() / "thresholds"


@dataclass(frozen=True)
class CalibrationSpec:
    """Which text, how much of it: the part of a table's identity the user chooses."""

    text: Optional[str] = None  # gsm8k (default; demo for the demo model), demo, or a file
    samples: int = DEFAULT_SAMPLES
    max_tokens: int = DEFAULT_TOKENS
    data_dir: Optional[Path] = None


def _key(lm: Any, method: str, spec: CalibrationSpec, text_name: str) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "method": method, "config_hash": lm.identity.config_hash, "weights": weights_fingerprint(lm.model),
            "dtype": str(lm.dtype), "text": text_name, "samples": spec.samples, "max_tokens": spec.max_tokens,
            "grid": [float(GRID[0]), float(GRID[-1]), len(GRID)]}


def table_digest(table: ThresholdTable) -> str:
    """A short digest of a table's numbers: two workers (or a later `verify`) agree on it exactly
    when they resolve every level to the same thresholds."""
    h = hashlib.sha256()
    for name, arr in sorted(table.to_arrays().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return threshold_dir() / f"{key['method']}-{digest}.npz"


def _load(path: Path, key: dict[str, Any]) -> Optional[ThresholdTable]:
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["key"]))
            if stored != key:
                return None
            return ThresholdTable(key["method"], json.loads(str(z["calibration"])), z["quantiles"],
                                  z["splits"] if "splits" in z.files else None)
    except (OSError, ValueError, KeyError):
        return None


def _save(path: Path, key: dict[str, Any], table: ThresholdTable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as tmp:
        np.savez(tmp, key=json.dumps(key), calibration=json.dumps(table.calibration), **table.to_arrays())


def calibrate(lm: Any, method: str, spec: CalibrationSpec = CalibrationSpec(), *, progress: bool = True,
              use_cache: bool = True, refresh: bool = False, say: Any = None) -> ThresholdTable:
    """The ThresholdTable of `method` for the LoadedModel `lm`: from the cache when it holds it
    (unless `refresh`), else computed and (with `use_cache`) stored."""
    if not get_method(method).calibrated:
        raise ValueError(f"{method} has no calibrated thresholds")
    cal = load_calibration(spec.text, data_dir=spec.data_dir, model_name=lm.spec.model, n=spec.samples,
                           skip=PROXY_SKIP if spec.text in (None, "gsm8k") and lm.spec.model != "demo" else 0)
    key = _key(lm, method, spec, cal.name)
    path = _path(key)
    if use_cache and not refresh and path.is_file():
        table = _load(path, key)
        if table is not None:
            return table
    from tqdm.auto import tqdm

    seqs = encode_calibration(lm.tokenizer, cal)
    batches = [torch.tensor([p + c]) for p, c in seqs]
    n_layers = len(lm.mlps)
    with tqdm(total=len(batches) + n_layers, desc=f"calibrating {method}", unit="step", disable=not progress,
              leave=False) as bar:
        xs = capture_mlp_inputs(lm.model, lm.mlps, batches, spec.max_tokens, progress=bar.update)
        calibration = {"text": cal.name, "tokens": int(xs[0].shape[0])}
        table = build_table(method, lm.mlps, xs, calibration, progress=bar.update)
    table.calibration["key"] = f"{method}-{table_digest(table)}"  # what the thresholds are, not where they are kept
    if use_cache:
        _save(path, key, table)
    if say is not None:
        say(f"calibrated {method} on {cal.name} ({calibration['tokens']} positions): cached in {path}")
    return table
