"""The demo's shipped files: the checkpoint directory, its model card and the held-out problems.

A module of its own so that `tasks.py` and the package `__init__` both read the paths from here
without importing each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparseinfer_dse.errors import UserError

_HERE = Path(__file__).resolve().parent


def checkpoint_dir() -> Path:
    """The shipped checkpoint: config.json, model.safetensors, tokenizer files, card.json."""
    return _HERE / "checkpoint"


def heldout_path() -> Path:
    """The shipped held-out problems (JSONL, GSM8K fields `question` and `answer`)."""
    return _HERE / "data" / "heldout.jsonl"


def card(path: Path | str | None = None) -> dict[str, Any]:
    """The model card of a demo checkpoint (default: the shipped one) as a dict."""
    p = Path(path) if path is not None else checkpoint_dir()
    f = p / "card.json"
    if not f.is_file():
        raise UserError(f"{p} has no card.json: not a demo checkpoint (build one with `sparseinfer-dse demo build`)")
    return json.loads(f.read_text())
