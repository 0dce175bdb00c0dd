"""Prompts for latency runs: the first GSM8K test questions, or built-in ones of the same kind."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from sparseinfer_dse.data.prompts import format_question, load_prompts
from sparseinfer_dse.errors import OptionError

# Used when no --data-dir is given: GSM8K-style questions written for this tool (not GSM8K items).
BUILTIN_QUESTIONS = (
    "A baker makes 48 muffins in the morning and 36 in the afternoon. She sells 5 boxes of 12 muffins. "
    "How many muffins are left at the end of the day?",
    "Tom reads 15 pages on Monday and twice as many pages on Tuesday. His book has 120 pages. How many "
    "pages does he still have to read?",
    "A farmer has 3 fields with 24 rows of corn each. Every row gives 9 ears of corn. He sells the corn "
    "for $2 per dozen ears. How much money does he make?",
    "Maria buys 4 notebooks at $3 each and 2 pens at $1.50 each. She pays with a $20 bill. How much "
    "change does she get?",
    "A train travels 60 miles per hour for 2.5 hours and then 45 miles per hour for 2 hours. How many "
    "miles does it travel in total?",
    "A school has 540 students. One third of them take the bus, and one quarter of the rest walk. How "
    "many students neither take the bus nor walk?",
    "Sam saves $15 every week. After 8 weeks he spends $45 on a game and $20 on a book. How much money "
    "does he have left?",
    "A rectangle garden is 12 meters long and 8 meters wide. A fence costs $7 per meter. How much does "
    "it cost to fence the whole garden?",
)


def gsm8k_prompts(n: int, data_dir: Optional[Path | str] = None) -> list[str]:
    """The first `n` GSM8K test questions from DATA_DIR/gsm8k/test.jsonl, or the built-in ones."""
    if n < 1:
        raise OptionError("prompts", "{prompts} must be at least 1")
    if data_dir is None:
        prompts = [format_question(q) for q in BUILTIN_QUESTIONS[:n]]
    else:
        prompts = load_prompts("gsm8k", n, Path(data_dir))
    if len(prompts) < n:
        raise OptionError("prompts", f"only {len(prompts)} prompts available, {{prompts}} {n} asked for")
    return prompts
