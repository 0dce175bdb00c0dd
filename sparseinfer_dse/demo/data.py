"""GSM8K-style word problems for the demo model: small multi-step arithmetic in varied templates.

Every problem is a question and a GSM8K-like answer, a few worked steps and a final line
`#### N`. Problems are drawn from a seeded `random.Random`, so a seed fixes the whole stream.

Train and held-out sets are disjoint by construction: a problem's *signature* (its family and
the exact chain of worked equations, i.e. the arithmetic it tests) is hashed with SHA-256 into
one of `SPLIT_BUCKETS` buckets; bucket 0 is held out, the others are training data. So no
held-out computation chain is ever trained on, in any wording, and no question text is shared.

Public API: `Problem`, `generate_problem(rng)`, `split_of(problem)`, `train_stream(seed)`,
`train_problems(seed, n)`, `heldout_problems(seed, n)`, `format_prompt(question)`,
`extract_answer(text)`, `read_jsonl(path)`, `write_jsonl(path, problems)`, `FAMILIES`.
The templates are in `families.py` (word lists in `words.py`), `Problem` in `problem.py`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Iterable, Iterator, Optional

from sparseinfer_dse.demo.families import FAMILIES
from sparseinfer_dse.demo.problem import Problem

SPLIT_BUCKETS = 10  # 1 of 10 signature buckets is held out
HELDOUT_SEED_OFFSET = 7_919  # held-out problems come from their own rng stream as well

_FAMILY_NAMES = list(FAMILIES)


def generate_problem(rng: random.Random) -> Problem:
    """One problem from `rng` (retries rejected draws; deterministic for the rng state)."""
    while True:
        fam = _FAMILY_NAMES[rng.randrange(len(_FAMILY_NAMES))]
        p = FAMILIES[fam](rng)
        if p is not None and 0 <= p.result <= 999 and all(
            0 <= int(eq.rsplit("=", 1)[1]) <= 999 for eq in p.signature.split(":", 1)[1].split("|")
        ):
            return p


def split_of(p: Problem) -> str:
    """'heldout' or 'train': SHA-256 of the arithmetic signature, bucket 0 of SPLIT_BUCKETS is held out."""
    h = int.from_bytes(hashlib.sha256(p.signature.encode()).digest()[:8], "big")
    return "heldout" if h % SPLIT_BUCKETS == 0 else "train"


def _stream(seed: int, split: str) -> Iterator[Problem]:
    rng = random.Random(seed if split == "train" else seed + HELDOUT_SEED_OFFSET)
    while True:
        p = generate_problem(rng)
        if split_of(p) == split:
            yield p


def train_stream(seed: int) -> Iterator[Problem]:
    """Endless deterministic stream of training problems (never a held-out signature)."""
    return _stream(seed, "train")


def train_problems(seed: int, n: int) -> list[Problem]:
    it = train_stream(seed)
    return [next(it) for _ in range(n)]


def heldout_problems(seed: int, n: int) -> list[Problem]:
    """`n` distinct held-out problems (distinct signatures) for `seed`."""
    out: list[Problem] = []
    seen: set[str] = set()
    for p in _stream(seed, "heldout"):
        if p.signature in seen or p.question in seen:
            continue
        seen.update((p.signature, p.question))
        out.append(p)
        if len(out) == n:
            return out
    raise AssertionError("unreachable")


PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


def format_prompt(question: str) -> str:
    """The prompt the model is trained on and evaluated with (lm-eval's gsm8k doc_to_text)."""
    return PROMPT_TEMPLATE.format(question=question)


_ANSWER_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


def extract_answer(text: str) -> Optional[str]:
    """The `#### N` answer as lm-eval's gsm8k strict-match sees it (first match), or None."""
    m = _ANSWER_RE.search(text)
    return m.group(1) if m else None


def write_jsonl(path: Path | str, problems: Iterable[Problem]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")


def read_jsonl(path: Path | str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
