"""Calibration text for the fidelity proxies: (prompt, reference continuation) pairs and their ids.

Sources: GSM8K's train split (the shipped copy or a --data-dir), the demo model's own training
distribution, or a user file (JSONL rows or plain-text paragraphs). `load_calibration` picks one
from the `--calibration` value; `encode_calibration` tokenizes a set for teacher-forced decoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sparseinfer_dse.data import data_dir as data_dir_of
from sparseinfer_dse.demo import data as D
from sparseinfer_dse.errors import UserError

DEFAULT_SAMPLES = 32
DEFAULT_MAX_PROMPT_TOKENS = 384
DEFAULT_MAX_CONTINUATION_TOKENS = 64


@dataclass(frozen=True)
class Calibration:
    """Calibration samples: (prompt, reference continuation) strings."""

    name: str
    samples: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.samples)


def gsm8k_calibration(data_dir: Optional[Path | str] = None, n: int = DEFAULT_SAMPLES,
                      split: str = "train", skip: int = 0) -> Calibration:
    """GSM8K questions with their reference answers, formatted like lm-eval's gsm8k task (from the
    shipped GSM8K unless `data_dir` names another copy)."""
    path = data_dir_of(data_dir) / "gsm8k" / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"calibration needs {path} (--data-dir must hold gsm8k/{split}.jsonl)")
    out, seen = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(out) >= n:
                break
            if line.strip():
                seen += 1
                if seen <= skip:
                    continue
                row = json.loads(line)
                out.append((f"Question: {row['question']}\nAnswer:", " " + row["answer"]))
    return Calibration(f"gsm8k-{split}[{skip or ''}:{skip + len(out)}]", tuple(out))


def demo_calibration(n: int = DEFAULT_SAMPLES, seed: int = 4242) -> Calibration:
    """The demo model's own kind of problems, from its training distribution (never held-out ones)."""
    probs = D.train_problems(seed, n)
    return Calibration(f"demo-train[seed={seed},n={n}]", tuple((D.format_prompt(p.question), " " + p.answer) for p in probs))


def file_calibration(path: Path | str, n: int = DEFAULT_SAMPLES) -> Calibration:
    """A JSONL file (rows with prompt/continuation, question/answer or input/target) or plain text.

    Plain text is cut into paragraphs (blank lines); each paragraph's first half is the prompt and
    its second half (split at a space) the continuation.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"calibration file not found: {path}")
    text = path.read_text(encoding="utf-8")
    pairs: list[tuple[str, str]] = []
    if path.suffix == ".jsonl":
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            for a, b in (("prompt", "continuation"), ("question", "answer"), ("input", "target")):
                if a in row and b in row:
                    sep = "" if b == "continuation" else " "
                    prompt = f"Question: {row[a]}\nAnswer:" if a == "question" else str(row[a])
                    pairs.append((prompt, sep + str(row[b])))
                    break
            else:
                if "text" in row:
                    pairs.append(_halves(str(row["text"])))
                else:
                    raise UserError(f"{path}:{i + 1}: a row needs prompt+continuation, question+answer, input+target or text")
    else:
        for para in (p.strip() for p in text.split("\n\n")):
            if len(para.split()) >= 4:
                pairs.append(_halves(para))
    if not pairs:
        raise UserError(f"{path}: no calibration samples found")
    return Calibration(f"file:{path.name}[:{min(n, len(pairs))}]", tuple(pairs[:n]))


def _halves(text: str) -> tuple[str, str]:
    mid = len(text) // 2
    cut = text.rfind(" ", 0, mid)
    cut = cut if cut > 0 else mid
    return text[:cut], text[cut:]


def load_calibration(spec: Optional[str], *, data_dir: Optional[Path | str] = None, model_name: str = "",
                     n: int = DEFAULT_SAMPLES, skip: int = 0) -> Calibration:
    """`gsm8k` (GSM8K's train split: data_dir's, else the shipped one), `demo`, a file path, or None:
    demo for the demo model, else gsm8k. `skip` leaves out the first samples of gsm8k (threshold
    calibration skips those the proxy scores on) and moves the demo's seed."""
    if spec is None:
        spec = "demo" if model_name == "demo" else "gsm8k"
    if spec == "demo":
        return demo_calibration(n, seed=4242 + skip)
    if spec == "gsm8k":
        return gsm8k_calibration(data_dir, n, skip=skip)
    return file_calibration(spec, n)


def _encode(tokenizer: Any, prompt: str, cont: str, max_prompt: int, max_cont: int) -> tuple[list[int], list[int]]:
    p = list(tokenizer(prompt)["input_ids"])
    full = list(tokenizer(prompt + cont)["input_ids"])
    if full[: len(p)] == p and len(full) > len(p):
        c = full[len(p):]
    else:  # the joint tokenization merged across the boundary: encode the continuation alone
        c = list(tokenizer(cont, add_special_tokens=False)["input_ids"])
    return p[-max_prompt:], c[:max_cont]


def encode_calibration(tokenizer: Any, calibration: Calibration, max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
                       max_continuation_tokens: int = DEFAULT_MAX_CONTINUATION_TOKENS,
                       max_length: Optional[int] = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) per sample, cut to the limits; samples with fewer than 2
    continuation tokens (no decode-step prediction to score) are dropped."""
    out = []
    for prompt, cont in calibration.samples:
        p, c = _encode(tokenizer, prompt, cont, max_prompt_tokens, max_continuation_tokens)
        if max_length is not None and len(p) + len(c) > max_length:
            p = p[-max(1, max_length - len(c)):]
            c = c[: max_length - len(p)]
        if len(p) >= 1 and len(c) >= 2:  # need at least one decode-step prediction
            out.append((p, c))
    if not out:
        raise UserError(f"calibration {calibration.name}: no sample has a continuation of 2 or more tokens")
    return out
