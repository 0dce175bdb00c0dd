"""Built-in demo model: a small ReLU Llama trained here on GSM8K-style arithmetic.

`checkpoint_dir()` is the shipped checkpoint (`--model demo` resolves to it), `card()` its
recipe, data, accuracy and per-layer decode sparsity, `heldout_path()` the shipped held-out
problems, `task_include_path()` the lm-eval task directory that defines `demo_arith`.
The recipe is in `train.py`, the problem generator in `data.py`. No heavy imports here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent

TASK_NAME = "demo_arith"


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
        from sparseinfer_dse.errors import UserError

        raise UserError(f"{p} has no card.json: not a demo checkpoint (build one with `sparseinfer-dse demo build`)")
    return json.loads(f.read_text())


def task_include_path() -> str:
    """A directory for lm-eval's `TaskManager(include_path=...)` that defines `demo_arith`."""
    from sparseinfer_dse.demo.tasks import task_include_path as _tip

    return _tip()


def _decoder_layers(model):
    inner = getattr(model, "model", model)
    return list(inner.layers)


__all__ = ["TASK_NAME", "card", "checkpoint_dir", "heldout_path", "task_include_path"]
