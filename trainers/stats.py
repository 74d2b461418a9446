"""Bootstrap intervals over tasks, for figures judged on a few dozen tasks (pure numpy).

A held-out figure is a statistic of per-task outcomes; the tasks are the sample. Resampling the tasks
with replacement (the nonparametric bootstrap) and recomputing the statistic gives its spread, and a
percentile interval. Comparing two policies on the same tasks, the statistic is the per-task
difference (a paired bootstrap): the task-to-task variation that both share cancels, so the interval of
the difference is much narrower than the two intervals side by side suggest.

Every function takes a seed, so a report's intervals are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate (on the full sample) and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def resample_indices(n_items: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``resamples`` x ``n_items`` row indices, each row a draw of the items with replacement."""
    if n_items < 1:
        raise ValueError(f"bootstrap needs at least one item, got {n_items}")
    if resamples < 1:
        raise ValueError(f"bootstrap needs at least one resample, got {resamples}")
    return np.random.default_rng(seed).integers(0, n_items, size=(resamples, n_items))


def percentile_interval(estimate: float, samples: np.ndarray, level: float = DEFAULT_LEVEL) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.asarray(samples, dtype=float), [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """``statistic(indices)`` on all items (the estimate) and on each resample of them (the interval).

    The statistic receives item indices, so one resample can feed several arrays (e.g. the per-task
    records of every policy at once, keeping them paired).
    """
    idx = resample_indices(n_items, resamples, seed)
    samples = np.array([statistic(row) for row in idx], dtype=float)
    return percentile_interval(statistic(np.arange(n_items)), samples, level)


def mean_interval(
    values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = DEFAULT_LEVEL
) -> Interval:
    """The mean of per-item values with its bootstrap interval (vectorised)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"mean_interval expects one value per item, got shape {values.shape}")
    idx = resample_indices(len(values), resamples, seed)
    return percentile_interval(float(values.mean()), values[idx].mean(axis=1), level)


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """Mean of ``a - b`` over the same items, with its paired bootstrap interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs the same items on both sides, got {a.shape} and {b.shape}")
    return mean_interval(a - b, resamples, seed, level)


def verdict(diff: Interval) -> str:
    """'beat' / 'lost' when the interval of (first - second) excludes zero on that side, else 'tied'."""
    if diff.low > 0:
        return "beat"
    if diff.high < 0:
        return "lost to"
    return "tied with"
