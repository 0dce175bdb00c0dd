"""Prompts for decoding runs (analysis, latency): GSM8K / BBH from a local data dir, the demo's
held-out problems, or a file. Formatted the way lm-eval's tasks present them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from sparseinfer_dse.errors import UserError


def format_question(question: str) -> str:
    """A question as lm-eval's gsm8k task presents it (`doc_to_text`)."""
    return f"Question: {question.strip()}\nAnswer:"


def _gsm8k(data_dir: Path, limit: int) -> list[str]:
    path = data_dir / "gsm8k" / "test.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: --data-dir must hold gsm8k/test.jsonl (the layout of shared/data)")
    out: list[str] = []
    with path.open() as f:
        for line in f:
            if len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                out.append(format_question(json.loads(line)["question"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path}: line {len(out) + 1} is not a GSM8K record with a 'question'") from None
    return out


def _bbh(data_dir: Path, limit: int) -> list[str]:
    files = sorted((data_dir / "bbh").glob("*.json"))
    if not files:
        raise UserError(f"no BBH files in {data_dir / 'bbh'}: --data-dir must hold bbh/*.json")
    per_task = [json.loads(f.read_text())["examples"] for f in files]
    out: list[str] = []
    i = 0
    while len(out) < limit and any(i < len(ex) for ex in per_task):  # round-robin over tasks
        out.extend(f"Q: {ex[i]['input']}\nA:" for ex in per_task if i < len(ex))
        i += 1
    return out[:limit]


def _demo(limit: int) -> list[str]:
    from sparseinfer_dse.demo import checkpoint_dir

    path = Path(checkpoint_dir()).parent / "data" / "heldout.jsonl"
    if not path.is_file():
        raise UserError(f"the demo's held-out problems are missing ({path})")
    lines = path.read_text().splitlines()[:limit]
    return [format_question(json.loads(line)["question"]) for line in lines]


def _file(path: Path, limit: int) -> list[str]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        keys = ("prompt", "question", "input", "text")
        out = []
        for r in rows:
            key = next((k for k in keys if k in r), None)
            if key is None:
                raise UserError(f"{path}: each JSONL row needs one of {', '.join(keys)}")
            out.append(str(r[key]))
        return out[:limit]
    return [line for line in text.splitlines() if line.strip()][:limit]


def load_prompts(kind: str, limit: int, data_dir: Optional[Path] = None) -> list[str]:
    """`kind` is gsm8k, bbh (both need data_dir), demo, or a path to a .txt/.jsonl file."""
    if limit < 1:
        raise UserError("--limit must be at least 1")
    if kind in ("gsm8k", "bbh"):
        if data_dir is None:
            raise UserError(f"--prompts {kind} needs --data-dir DIR (a folder with gsm8k/ and bbh/, like shared/data)")
        return _gsm8k(Path(data_dir), limit) if kind == "gsm8k" else _bbh(Path(data_dir), limit)
    if kind == "demo":
        return _demo(limit)
    path = Path(kind)
    if not path.is_file():
        raise UserError(f"--prompts must be gsm8k, bbh, demo or an existing file, not {kind!r}")
    prompts = _file(path, limit)
    if not prompts:
        raise UserError(f"{path} holds no prompts")
    return prompts
