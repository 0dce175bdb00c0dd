"""The seven problem families: GSM8K-style templates of 2-4 worked arithmetic steps.

Each family draws from a `random.Random` and returns a `Problem`, or None for a rejected draw
(a value out of range); `FAMILIES` maps family names to them, in the order the generator picks.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from sparseinfer_dse.demo.problem import Problem, Steps
from sparseinfer_dse.demo.words import CONTAINERS, GOODS, NAMES, PERIODS, PLACES, RATES, THINGS


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
    st = Steps()
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
    st = Steps()
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
    st = Steps()
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
    st = Steps()
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
    st = Steps()
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
    st = Steps()
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
    st = Steps()
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
