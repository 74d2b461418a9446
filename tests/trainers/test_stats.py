"""Bootstrap intervals: coverage of a known mean, pairing, verdicts, reproducibility, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hrm_spawn.trainers.stats import (
    Interval,
    bootstrap,
    mean_interval,
    paired_difference,
    percentile_interval,
    resample_indices,
    verdict,
)


def test_mean_interval_contains_the_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.3, 1.0, 25), rng.normal(0.3, 1.0, 400)
    a, b = mean_interval(small, seed=0), mean_interval(large, seed=0)
    assert a.low <= a.estimate <= a.high and b.low <= b.estimate <= b.high
    assert a.estimate == pytest.approx(small.mean())
    assert (b.high - b.low) < (a.high - a.low) / 2  # about 1/sqrt(16) as wide
    assert b.low < 0.3 < b.high


def test_percentile_interval_of_known_samples():
    iv = percentile_interval(5.0, np.arange(1001, dtype=float), level=0.9)
    assert (iv.low, iv.high) == pytest.approx((50.0, 950.0))
    assert iv.estimate == 5.0 and iv.level == 0.9


def test_the_same_seed_gives_the_same_interval():
    x = np.random.default_rng(3).random(30)
    assert mean_interval(x, seed=7) == mean_interval(x, seed=7)
    assert mean_interval(x, seed=7) != mean_interval(x, seed=8)


def test_pairing_removes_the_shared_task_variation():
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0, 1.0, 40)  # what both policies share per task
    a, b = difficulty + 0.1, difficulty.copy()
    diff = paired_difference(a, b)
    assert diff.estimate == pytest.approx(0.1) and diff.low == pytest.approx(0.1)
    assert verdict(diff) == "beat"
    unpaired_width = mean_interval(a).high - mean_interval(a).low
    assert unpaired_width > 0.3 and diff.high - diff.low < 1e-9


def test_verdicts():
    assert verdict(Interval(0.1, 0.02, 0.2)) == "beat"
    assert verdict(Interval(-0.1, -0.2, -0.01)) == "lost to"
    assert verdict(Interval(0.05, -0.01, 0.1)) == "tied with"
    assert Interval(0.05, -0.01, 0.1).excludes_zero() is False
    assert str(Interval(0.1234, 0.1, 0.2)) == "0.123 [0.100, 0.200]"


def test_bootstrap_feeds_the_same_indices_to_a_joint_statistic():
    x, y = np.arange(10.0), np.arange(10.0) * 2
    seen = []

    def stat(idx):
        seen.append(idx.copy())
        return float(y[idx].mean() - 2 * x[idx].mean())  # always 0 when x and y stay paired

    iv = bootstrap(stat, 10, resamples=50, seed=0)
    assert iv.estimate == 0.0 and iv.low == 0.0 and iv.high == 0.0
    assert len(seen) == 51 and (seen[-1] == np.arange(10)).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one item"):
        resample_indices(0)
    with pytest.raises(ValueError, match="same items"):
        paired_difference(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="one value per item"):
        mean_interval(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(0.0, np.zeros(3), level=1.5)
