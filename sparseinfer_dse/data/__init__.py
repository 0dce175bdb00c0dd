"""Benchmark data shipped with the tool, so every command works offline with no flag.

`DATA_DIR` holds `gsm8k/{train,test}.jsonl` (GSM8K, MIT licence in `gsm8k/LICENSE`) and
`bbh/*.json` with `bbh/cot-prompts/` (BIG-Bench Hard, MIT licence in `bbh/LICENSE`): the files
lm-eval's `gsm8k*` and `bbh*` tasks would otherwise download from the Hugging Face hub. A
`--data-dir` pointing at another copy with the same layout overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

DATA_DIR = Path(__file__).resolve().parent


def data_dir(path: Optional[Union[str, Path]] = None) -> Path:
    """`path` (expanded) when given, else the shipped copy."""
    return Path(path).expanduser() if path is not None else DATA_DIR


__all__ = ["DATA_DIR", "data_dir"]
