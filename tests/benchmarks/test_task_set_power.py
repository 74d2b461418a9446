"""benchmarks/task_set_power.py: how many tasks a difference needs before it can show."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.benchmark_module import benchmark_module


@pytest.fixture
def tsp():
    with benchmark_module("task_set_power.py") as module:
        yield module


def _outcomes(n: int, oracle_only: int) -> dict:
    """'single' resolves every other task; the oracle also resolves ``oracle_only`` tasks it misses."""
    single = [float(i % 2) if i >= oracle_only else 0.0 for i in range(n)]
    oracle = [1.0 if i < oracle_only else s for i, s in enumerate(single)]
    policies = {"hrm": single, "single": single, "halt": [0.0] * n, "oracle": oracle}
    return {
        "tasks": [f"t{i}" for i in range(n)],
        "lams": [0.01],
        "policies": {
            k: {"pass_rate": [v], "cost": [[0.0] * n], "resolved": [v]} for k, v in policies.items()
        },
    }


def test_a_small_edge_needs_many_tasks_to_show(tsp):
    table = tsp.power_table(_outcomes(24, 2), "oracle", [24, 240], draws=100, resamples=300, seed=0)
    assert set(table) == {"single", "halt"}  # the HRM and the oracle are not baselines of the oracle
    assert table["single"][24] < 0.6 < 0.95 < table["single"][240]
    assert table["halt"][24] == 1.0
    assert tsp.smallest_size(table, 0.8) == 240
    assert tsp.smallest_size({"single": {24: 0.5, 48: 0.7}}, 0.8) is None


def test_scores_are_at_the_reports_lambda(tsp):
    outcomes = _outcomes(4, 1)
    outcomes["policies"]["halt"]["cost"] = [[10.0] * 4]
    names, scores = tsp.score_rows(outcomes)
    assert np.allclose(scores[names.index("halt")], -0.1)
    with pytest.raises(ValueError):
        tsp.power_table(outcomes, "nobody", [4], 1, 10, 0)
