"""One demo word problem (`Problem`) and the worked-steps builder (`Steps`) the families use.

A problem's `signature` (family + the chain of worked equations) is what the train/held-out
split hashes, so `Steps` records every equation as it writes the answer line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # worked steps, last line "#### N"
    family: str
    signature: str  # family + worked equations: the arithmetic this problem tests

    @property
    def result(self) -> int:
        return int(self.answer.rsplit("#### ", 1)[1])

    def to_json(self) -> dict:
        return {"question": self.question, "answer": self.answer, "family": self.family}


class Steps:
    """Collects worked steps; each `calc` returns the value and records its equation."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.eqs: list[str] = []

    def calc(self, op: str, a: int, b: int, template: str, c: Optional[int] = None) -> int:
        val = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
        expr = f"{a} {op} {b}"
        if c is not None:  # three-term sums
            val = a + b + c
            expr = f"{a} + {b} + {c}"
        self.eqs.append(f"{expr}={val}")
        self.lines.append(template.format(calc=f"{expr} = {val}", val=val))
        return val

    def finish(self, family: str, question: str, result: int) -> Problem:
        answer = "\n".join(self.lines + [f"#### {result}"])
        return Problem(question, answer, family, family + ":" + "|".join(self.eqs))
