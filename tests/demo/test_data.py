"""The problem generator: deterministic for a seed, GSM8K-like answers, train/held-out disjoint."""

from __future__ import annotations

import random

from sparseinfer_dse.demo import data as D
from sparseinfer_dse.demo import heldout_path


def test_deterministic_for_a_seed():
    a = D.train_problems(5, 200)
    assert a == D.train_problems(5, 200)
    assert a != D.train_problems(6, 200)
    assert D.heldout_problems(5, 50) == D.heldout_problems(5, 50)
    r1, r2 = random.Random(3), random.Random(3)
    assert [D.generate_problem(r1) for _ in range(50)] == [D.generate_problem(r2) for _ in range(50)]


def test_answers_are_gsm8k_like_and_correct():
    for p in D.train_problems(0, 500):
        lines = p.answer.split("\n")
        assert 2 <= len(lines) - 1 <= 4, p.answer  # 2-4 worked steps
        assert lines[-1] == f"#### {p.result}"
        assert D.extract_answer(p.answer) == str(p.result)
        for eq in p.signature.split(":", 1)[1].split("|"):  # every worked equation is right
            lhs, rhs = eq.split("=")
            assert eval(lhs.replace("/", "//")) == int(rhs), eq
        assert p.question.endswith("?") and "####" not in p.question
    assert {p.family for p in D.train_problems(0, 500)} == set(D.FAMILIES)


def test_train_and_heldout_disjoint():
    train = D.train_problems(0, 20000)
    held = D.heldout_problems(0, 400)
    assert all(D.split_of(p) == "train" for p in train)
    assert all(D.split_of(p) == "heldout" for p in held)
    assert not {p.signature for p in train} & {p.signature for p in held}
    assert not {p.question for p in train} & {p.question for p in held}
    assert len({p.signature for p in held}) == len(held)


def test_shipped_heldout_file_is_the_generated_set():
    rows = D.read_jsonl(heldout_path())
    assert len(rows) >= 200
    held = D.heldout_problems(0, len(rows))
    assert rows == [p.to_json() for p in held]
    assert all(set(r) >= {"question", "answer"} for r in rows)
