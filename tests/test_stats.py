"""The intervals and tests the verdicts rest on: coverage, pairing, exactness on known cases."""

import numpy as np
import pytest

from sparseinfer_dse.stats import (intervals_differ, is_binary, mcnemar_p, mean_interval, median_interval,
                                   paired_delta, paired_differ)


def test_median_interval_order_statistics_of_ten():
    iv = median_interval(list(range(10, 0, -1)))  # unsorted on purpose
    assert (iv.estimate, iv.low, iv.high) == (5.5, 2.0, 9.0)  # x(2), x(9)
    assert iv.coverage == pytest.approx(1 - 2 * 11 / 1024)


def test_median_interval_small_n_is_min_max_with_its_coverage():
    iv = median_interval([3.0, 1.0, 2.0])
    assert (iv.low, iv.high) == (1.0, 3.0)
    assert iv.coverage == pytest.approx(0.75)


def test_median_interval_covers_the_true_median_at_its_level():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        iv = median_interval(rng.lognormal(0.0, 0.5, size=12))
        hits += iv.low <= 1.0 <= iv.high  # the lognormal's median is exp(0) = 1
    assert hits / 2000 >= 0.95


def test_mean_interval_binary_items():
    iv = mean_interval([1] * 70 + [0] * 30)
    assert iv.estimate == pytest.approx(0.7)
    assert 0.59 <= iv.low <= 0.62 and 0.78 <= iv.high <= 0.81  # ~ +-1.96 * sqrt(.21/100)


def test_paired_delta_is_tighter_than_the_unpaired_difference():
    rng = np.random.default_rng(1)
    base = rng.normal(size=200)
    a, b = base + 0.1, base + rng.normal(scale=0.01, size=200)
    iv = paired_delta(a, b)
    assert iv.low > 0.08 and iv.high < 0.12


def test_mcnemar_exact():
    assert mcnemar_p([1, 1, 1, 1, 0], [0, 0, 0, 0, 0]) == pytest.approx(0.125)  # 4 discordant, one way
    assert mcnemar_p([1] * 6, [0] * 6) == pytest.approx(2 / 64)
    assert mcnemar_p([1, 0], [1, 0]) == 1.0


def test_paired_differ_binary_and_continuous():
    assert paired_differ([1] * 6 + [0] * 94, [0] * 100) == 1
    assert paired_differ([0] * 100, [1] * 6 + [0] * 94) == -1
    assert paired_differ([1] * 4 + [0] * 96, [0] * 100) == 0  # p = 0.125
    assert paired_differ([0.5, 0.7, 0.9, 0.2] * 10, [0.5, 0.7, 0.9, 0.2] * 10) == 0
    assert paired_differ(np.linspace(1, 2, 40), np.linspace(1, 2, 40) - 0.3) == 1
    with pytest.raises(ValueError):
        paired_differ([1, 0], [1])


def test_is_binary_and_intervals_differ():
    assert is_binary([0, 1.0, 1]) and not is_binary([0.5, 1])
    assert intervals_differ(2, 3, 0, 1) == 1 and intervals_differ(0, 1, 2, 3) == -1 and intervals_differ(0, 2, 1, 3) == 0
