"""Prompts for decoding runs (analysis, latency): GSM8K / BBH from the shipped copy or another data
folder, the demo's held-out problems, or a file. Formatted the way lm-eval's tasks present them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import sparseinfer_dse.data
from sparseinfer_dse.demo import heldout_path
from sparseinfer_dse.errors import UserError

_FILE_KEYS = ("prompt", "question", "input", "text")


def format_question(question: str) -> str:
    """A question as lm-eval's gsm8k task presents it (`doc_to_text`)."""
    return f"Question: {question.strip()}\nAnswer:"


def _gsm8k_questions(path: Path, limit: int, missing: str) -> list[str]:
    """The first `limit` questions of a GSM8K-style JSONL file, formatted; `missing` explains its absence."""
    if not path.is_file():
        raise UserError(f"{path} not found: {missing}")
    out: list[str] = []
    with path.open() as f:
        for line in f:
            if len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                out.append(format_question(json.loads(line)["question"]))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise UserError(f"{path}: line {len(out) + 1} is not a GSM8K record with a 'question'") from None
    return out


def _bbh(folder: Path, limit: int) -> list[str]:
    files = sorted((folder / "bbh").glob("*.json"))
    if not files:
        raise UserError(f"no BBH files in {folder / 'bbh'}: the data folder must hold bbh/*.json")
    per_task = []
    for f in files:
        try:
            per_task.append([f"Q: {ex['input']}\nA:" for ex in json.loads(f.read_text())["examples"]])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{f} is not a BBH file ({{\"examples\": [{{\"input\": ...}}]}})") from None
    out: list[str] = []
    i = 0
    while len(out) < limit and any(i < len(ex) for ex in per_task):  # round-robin over tasks
        out.extend(ex[i] for ex in per_task if i < len(ex))
        i += 1
    return out[:limit]


def _file(path: Path, limit: int) -> list[str]:
    text = path.read_text()
    if path.suffix != ".jsonl":
        return [line for line in text.splitlines() if line.strip()][:limit]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}: line {n} is not JSON") from None
        key = next((k for k in _FILE_KEYS if isinstance(row, dict) and k in row), None)
        if key is None:
            raise UserError(f"{path}: each JSONL row needs one of {', '.join(_FILE_KEYS)}")
        out.append(str(row[key]))
    return out[:limit]


def load_prompts(kind: str, limit: int, data_dir: Optional[Union[str, Path]] = None) -> list[str]:
    """`kind` is gsm8k or bbh (from `data_dir`, default the shipped copy), demo, or a .txt/.jsonl file."""
    if limit < 1:
        raise UserError("--limit must be at least 1")
    if kind in ("gsm8k", "bbh"):
        folder = sparseinfer_dse.data.data_dir(data_dir)
        if kind == "bbh":
            return _bbh(folder, limit)
        return _gsm8k_questions(folder / "gsm8k" / "test.jsonl", limit, "the data folder must hold gsm8k/test.jsonl")
    if kind == "demo":
        return _gsm8k_questions(heldout_path(), limit, "the demo's held-out problems are missing")
    path = Path(kind)
    if not path.is_file():
        raise UserError(f"--prompts must be gsm8k, bbh, demo or an existing file, not {kind!r}")
    prompts = _file(path, limit)
    if not prompts:
        raise UserError(f"{path} holds no prompts")
    return prompts
