"""GSM8K-style word problems for the demo model: small multi-step arithmetic in varied templates.

Every problem is a question and a GSM8K-like answer, a few worked steps and a final line
`#### N`. Problems are drawn from a seeded `random.Random`, so a seed fixes the whole stream.

Train and held-out sets are disjoint by construction: a problem's *signature* (its family and
the exact chain of worked equations, i.e. the arithmetic it tests) is hashed with SHA-256 into
one of `SPLIT_BUCKETS` buckets; bucket 0 is held out, the others are training data. So no
held-out computation chain is ever trained on, in any wording, and no question text is shared.

Public API: `Problem`, `generate_problem(rng)`, `split_of(problem)`, `train_stream(seed)`,
`train_problems(seed, n)`, `heldout_problems(seed, n)`, `format_prompt(question)`,
`extract_answer(text)`, `read_jsonl(path)`, `write_jsonl(path, problems)`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

SPLIT_BUCKETS = 10  # 1 of 10 signature buckets is held out
HELDOUT_SEED_OFFSET = 7_919  # held-out problems come from their own rng stream as well

# name, pronoun (subject), possessive
NAMES: list[tuple[str, str, str]] = [
    (n, "she", "her")
    for n in (
        "Ava Mia Emma Olivia Sofia Lily Chloe Grace Zoe Nora Ella Ruby Hannah Leah Maya Isla Alice Clara "
        "Julia Rosa Amara Priya Mei Fatima Lucia Ingrid Keiko Aisha Nina Tara"
    ).split()
] + [
    (n, "he", "his")
    for n in (
        "Liam Noah Ethan Lucas Mason Leo Jack Owen Samuel Henry Omar Ravi Diego Kenji Felix Hugo Ivan "
        "Marco Pedro Tom Ben Sam Max Oscar Arjun Tariq Jonas Mateo Yusuf Carl"
    ).split()
]

# singular, plural
THINGS: list[tuple[str, str]] = [
    ("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("book", "books"),
    ("pencil", "pencils"), ("cookie", "cookies"), ("card", "cards"), ("shell", "shells"),
    ("stamp", "stamps"), ("balloon", "balloons"), ("egg", "eggs"), ("toy car", "toy cars"),
    ("flower", "flowers"), ("crayon", "crayons"), ("bead", "beads"), ("coin", "coins"),
    ("candy", "candies"), ("cupcake", "cupcakes"), ("orange", "oranges"), ("block", "blocks"),
    ("ribbon", "ribbons"), ("button", "buttons"), ("muffin", "muffins"), ("rock", "rocks"),
    ("peach", "peaches"), ("comic", "comics"), ("puzzle", "puzzles"), ("seashell", "seashells"),
]

CONTAINERS: list[tuple[str, str]] = [
    ("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("jar", "jars"), ("basket", "baskets"),
    ("crate", "crates"), ("tray", "trays"), ("tin", "tins"),
]

# (singular, plural) of shop items for the shopping family
GOODS: list[tuple[str, str]] = [
    ("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"), ("juice", "juices"),
    ("toy", "toys"), ("ticket", "tickets"), ("shirt", "shirts"), ("cake", "cakes"),
    ("ball", "balls"), ("plant", "plants"), ("hat", "hats"), ("sock", "socks"),
    ("pie", "pies"), ("kite", "kites"), ("mug", "mugs"), ("lamp", "lamps"),
]

# unit (plural), verb (third person), verb (base form)
RATES: list[tuple[str, str, str]] = [
    ("pages", "reads", "read"), ("laps", "swims", "swim"), ("miles", "runs", "run"),
    ("dollars", "saves", "save"), ("pictures", "draws", "draw"), ("words", "writes", "write"),
    ("push-ups", "does", "do"), ("cookies", "bakes", "bake"), ("songs", "practices", "practice"),
    ("emails", "answers", "answer"),
]

PERIODS: list[tuple[str, str]] = [("day", "days"), ("week", "weeks"), ("hour", "hours"), ("month", "months")]

PLACES = ["at the park", "at school", "at the market", "on the beach", "in the garden", "at the fair",
          "at the library", "in the kitchen", "at the store", "at camp"]


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


class _Steps:
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


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def _two_names(rng: random.Random):
    a = _pick(rng, NAMES)
    b = _pick(rng, NAMES)
    while b[0] == a[0]:
        b = _pick(rng, NAMES)
    return a, b


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


# ---------------------------------------------------------------------------------------------
# families: each returns a Problem or None (rejected draw: a value out of range)


def _change_chain(rng: random.Random) -> Optional[Problem]:
    """X has a things; 1-3 events add or remove some (one event may be 'n packs of m')."""
    (name, he, his), (friend, _, _) = _two_names(rng)
    one, many = _pick(rng, THINGS)
    box, boxes = _pick(rng, CONTAINERS)
    a = rng.randint(5, 40)
    st = _Steps()
    sents = [_pick(rng, [
        f"{name} has {a} {many}.",
        f"{name} had {a} {many} {_pick(rng, PLACES)}.",
        f"{name} starts the day with {a} {many}.",
        f"There are {a} {many} in {name}'s room.",
    ])]
    cur = a
    n_events = rng.randint(2, 3)
    used_packs = False
    for i in range(n_events):
        kind = rng.random()
        then = "" if i == 0 else _pick(rng, ["Then ", "After that, ", "Later, ", "Next, "])
        subj = he if then else name
        if kind < 0.2 and not used_packs:
            used_packs = True
            n, m = rng.randint(2, 6), rng.randint(2, 9)
            sents.append(_cap(then + subj) + " " + _pick(rng, [
                f"buys {n} {boxes} of {many} with {m} {many} in each {box}.",
                f"gets {n} {boxes} of {many}, and each {box} has {m} {many}.",
            ]))
            p = st.calc("*", n, m, "The {calc} " + many + " come in the " + boxes + ".")
            cur = st.calc("+", cur, p, name + " has {calc} " + many + " now.")
        elif kind < 0.6:
            b = rng.randint(2, 30)
            sents.append(_cap(then + subj) + " " + _pick(rng, [
                f"buys {b} more {many}.",
                f"finds {b} more {many}.",
                f"gets {b} {many} from {friend}.",
                f"picks up {b} more {many}.",
                f"is given {b} {many} by {friend}.",
                f"wins {b} {many} in a game.",
            ]))
            cur = st.calc("+", cur, b, name + " has {calc} " + many + " after that.")
        else:
            if cur < 4:
                return None
            b = rng.randint(2, min(cur - 1, 30))
            sents.append(_cap(then + subj) + " " + _pick(rng, [
                f"gives {b} {many} to {friend}.",
                f"loses {b} {many}.",
                f"sells {b} of the {many}.",
                f"gives away {b} {many}.",
                f"shares {b} {many} with {friend}.",
                f"uses {b} of them.",
            ]))
            cur = st.calc("-", cur, b, name + " has {calc} " + many + " left.")
    q = _pick(rng, [
        f"How many {many} does {name} have now?",
        f"How many {many} does {name} have in the end?",
        f"How many {many} are left with {name}?",
    ])
    return st.finish("change", " ".join(sents) + " " + q, cur)


def _groups(rng: random.Random) -> Optional[Problem]:
    """n containers of m things; some used; the rest shared equally (or not)."""
    (name, he, his), _ = _two_names(rng)
    one, many = _pick(rng, THINGS)
    box, boxes = _pick(rng, CONTAINERS)
    n, m = rng.randint(2, 9), rng.randint(2, 12)
    st = _Steps()
    total = st.calc("*", n, m, "There are {calc} " + many + " in the " + boxes + ".")
    c = rng.randint(1, max(1, total // 2))
    sents = [_pick(rng, [
        f"{name} has {n} {boxes} of {many}. Each {box} holds {m} {many}.",
        f"{name} buys {n} {boxes} with {m} {many} in each {box}.",
        f"A {box} holds {m} {many}, and {name} fills {n} {boxes}.",
    ])]
    use = _pick(rng, [f"{_cap(he)} gives {c} {many} to a neighbor.", f"{_cap(he)} uses {c} of the {many}.",
                      f"{_cap(he)} drops {c} {many} on the way home.", f"{_cap(he)} eats {c} of the {many}."])
    sents.append(use)
    rest = st.calc("-", total, c, "After that, {calc} " + many + " are left.")
    if rng.random() < 0.5:
        divisors = [q for q in range(2, 10) if rest % q == 0 and rest // q >= 1]
        if not divisors:
            return None
        q = _pick(rng, divisors)
        sents.append(_pick(rng, [
            f"{_cap(he)} shares the rest equally among {q} friends.",
            f"{_cap(he)} puts the rest into {q} equal piles.",
        ]))
        res = st.calc("/", rest, q, "Each gets {calc} " + many + ".")
        qs = _pick(rng, [f"How many {many} does each get?", f"How many {many} are in each share?"])
    else:
        res = rest
        qs = _pick(rng, [f"How many {many} are left?", f"How many {many} does {name} have left?"])
    return st.finish("groups", " ".join(sents) + " " + qs, res)


def _shopping(rng: random.Random) -> Optional[Problem]:
    """Two kinds of goods, counts and prices; total cost, maybe change from a bill."""
    (name, he, his), _ = _two_names(rng)
    g1 = _pick(rng, GOODS)
    g2 = _pick(rng, GOODS)
    while g2 == g1:
        g2 = _pick(rng, GOODS)
    p1, p2 = rng.randint(2, 12), rng.randint(2, 12)
    n1, n2 = rng.randint(2, 6), rng.randint(2, 6)
    st = _Steps()
    sents = [_pick(rng, [
        f"A {g1[0]} costs ${p1} and a {g2[0]} costs ${p2}.",
        f"At the shop, {g1[1]} cost ${p1} each and {g2[1]} cost ${p2} each.",
        f"Each {g1[0]} is ${p1} and each {g2[0]} is ${p2}.",
    ])]
    sents.append(_pick(rng, [f"{name} buys {n1} {g1[1]} and {n2} {g2[1]}.",
                             f"{name} gets {n1} {g1[1]} and {n2} {g2[1]}."]))
    c1 = st.calc("*", n1, p1, "The " + g1[1] + " cost {calc} dollars.")
    c2 = st.calc("*", n2, p2, "The " + g2[1] + " cost {calc} dollars.")
    tot = st.calc("+", c1, c2, "In total " + name + " spends {calc} dollars.")
    if rng.random() < 0.5:
        bills = [b for b in (20, 50, 100, 200) if b > tot]
        if not bills:
            return None
        b = bills[0]
        sents.append(f"{_cap(he)} pays with a ${b} bill.")
        res = st.calc("-", b, tot, _cap(he) + " gets {calc} dollars back.")
        qs = _pick(rng, [f"How much change does {name} get?", f"How many dollars does {name} get back?"])
    else:
        res = tot
        qs = _pick(rng, [f"How much does {name} spend in all?", f"How many dollars does {name} pay?"])
    return st.finish("shopping", " ".join(sents) + " " + qs, res)


def _rate(rng: random.Random) -> Optional[Problem]:
    """r units per period for n periods, plus/minus an extra amount."""
    (name, he, his), _ = _two_names(rng)
    unit, does, do = _pick(rng, RATES)
    per, pers = _pick(rng, PERIODS)
    r, n = rng.randint(2, 15), rng.randint(2, 8)
    st = _Steps()
    sents = [_pick(rng, [
        f"{name} {does} {r} {unit} every {per}.",
        f"Each {per}, {name} {does} {r} {unit}.",
        f"{name} {does} {r} {unit} per {per}.",
    ])]
    base = st.calc("*", r, n, "In " + str(n) + " " + pers + " that is {calc} " + unit + ".")
    e = rng.randint(2, 25)
    if rng.random() < 0.6:
        sents.append(_pick(rng, [
            f"After {n} {pers}, {he} {does} {e} more {unit} in one go.",
            f"On top of {n} {pers} of that, {he} {does} {e} extra {unit} on the weekend.",
        ]))
        res = st.calc("+", base, e, "With the extra, the total is {calc} " + unit + ".")
        qs = f"How many {unit} does {name} {do} in total?"
    else:
        if e >= base:
            return None
        sents.append(f"{_cap(he)} keeps this up for {n} {pers}, but {e} of the {unit} do not count.")
        res = st.calc("-", base, e, "Without those, the total is {calc} " + unit + ".")
        qs = f"How many {unit} count?"
    return st.finish("rate", " ".join(sents) + " " + qs, res)


def _compare(rng: random.Random) -> Optional[Problem]:
    """Three people; relative amounts (more, fewer, times as many); total together."""
    (n1, _, _), (n2, _, _) = _two_names(rng)
    n3 = _pick(rng, NAMES)[0]
    while n3 in (n1, n2):
        n3 = _pick(rng, NAMES)[0]
    one, many = _pick(rng, THINGS)
    a = rng.randint(3, 25)
    st = _Steps()
    sents = [f"{n1} has {a} {many}."]
    if rng.random() < 0.5:
        b = rng.randint(2, 15)
        sents.append(f"{n2} has {b} more {many} than {n1}.")
        y = st.calc("+", a, b, n2 + " has {calc} " + many + ".")
    else:
        k = rng.randint(2, 4)
        word = {2: "twice", 3: "three times", 4: "four times"}[k]
        sents.append(f"{n2} has {word} as many {many} as {n1}.")
        y = st.calc("*", a, k, n2 + " has {calc} " + many + ".")
    c = rng.randint(2, 15)
    if c >= y:
        return None
    sents.append(f"{n3} has {c} fewer {many} than {n2}.")
    z = st.calc("-", y, c, n3 + " has {calc} " + many + ".")
    if rng.random() < 0.6:
        tot = st.calc("+", a, y, "Together they have {calc} " + many + ".", c=z)
        qs = _pick(rng, [f"How many {many} do they have together?", f"How many {many} do the three have in all?"])
    else:
        tot = z
        qs = f"How many {many} does {n3} have?"
    return st.finish("compare", " ".join(sents) + " " + qs, tot)


def _half(rng: random.Random) -> Optional[Problem]:
    """Half (or a third) given away, then more bought or some used."""
    (name, he, his), (friend, _, _) = _two_names(rng)
    one, many = _pick(rng, THINGS)
    q = _pick(rng, [2, 2, 3, 4])
    frac = {2: "half", 3: "a third", 4: "a quarter"}[q]
    a = q * rng.randint(3, 15)
    st = _Steps()
    sents = [f"{name} has {a} {many}.",
             _pick(rng, [f"{_cap(he)} gives {frac} of them to {friend}.",
                         f"{_cap(he)} sells {frac} of them {_pick(rng, PLACES)}."])]
    part = st.calc("/", a, q, name + " gives away {calc} " + many + ".")
    rest = st.calc("-", a, part, name + " keeps {calc} " + many + ".")
    b = rng.randint(2, 20)
    if rng.random() < 0.5:
        sents.append(f"Then {he} buys {b} more {many}.")
        res = st.calc("+", rest, b, "Then " + he + " has {calc} " + many + ".")
    else:
        if b >= rest:
            return None
        sents.append(f"Then {he} loses {b} {many}.")
        res = st.calc("-", rest, b, "Then " + he + " has {calc} " + many + ".")
    qs = f"How many {many} does {name} have now?"
    return st.finish("half", " ".join(sents) + " " + qs, res)


def _ages(rng: random.Random) -> Optional[Problem]:
    """Ages: older/younger/times as old, sum or a future age."""
    (n1, _, _), (n2, _, _) = _two_names(rng)
    a = rng.randint(3, 15)
    st = _Steps()
    sents = [f"{n1} is {a} years old."]
    if rng.random() < 0.5:
        b = rng.randint(2, 12)
        sents.append(f"{n2} is {b} years older than {n1}.")
        y = st.calc("+", a, b, n2 + " is {calc} years old.")
    else:
        k = rng.randint(2, 3)
        sents.append(f"{n2} is {'twice' if k == 2 else 'three times'} as old as {n1}.")
        y = st.calc("*", a, k, n2 + " is {calc} years old.")
    if rng.random() < 0.5:
        t = rng.randint(2, 10)
        sents.append(f"How old will {n2} be in {t} years?")
        res = st.calc("+", y, t, "In " + str(t) + " years " + n2 + " will be {calc} years old.")
        return st.finish("ages", " ".join(sents), res)
    res = st.calc("+", a, y, "Their ages add up to {calc} years.")
    sents.append("What is the sum of their ages?")
    return st.finish("ages", " ".join(sents), res)


FAMILIES: dict[str, Callable[[random.Random], Optional[Problem]]] = {
    "change": _change_chain,
    "groups": _groups,
    "shopping": _shopping,
    "rate": _rate,
    "compare": _compare,
    "half": _half,
    "ages": _ages,
}
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
