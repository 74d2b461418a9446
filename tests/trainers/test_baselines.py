"""Baselines on the hand-filled store: exact figures follow from the table in conftest.py."""

from __future__ import annotations

import pytest

from hrm_spawn.envs.features import num_features
from hrm_spawn.envs.spawn_env import load_env_config
from hrm_spawn.trainers.baselines import SequenceActor, cascade_candidates
from hrm_spawn.trainers.evaluate import CascadeTable, baseline_records, replay_sets
from hrm_spawn.trainers.report import summarize

LAM = 0.02


@pytest.fixture
def sets(replay_data):
    return replay_sets(load_env_config(replay_data.env()), "heldout")


def test_fixed_baselines_match_the_table(sets) -> None:
    train, test = sets
    recs = baseline_records(train, test, LAM, CascadeTable(train))
    m = {name: summarize(r, LAM) for name, r in recs.items()}
    n_flip = sum(".flip" in t.instance_id for t in test.tasks) / len(test.tasks)
    assert m["halt"]["pass_rate"] == 0.0 and m["halt"]["mean_cost"] == 0.0
    # alpha: flip 1.0 at 2 units, swap 0.2 at 2 units
    assert m["single:alpha"]["pass_rate"] == pytest.approx(n_flip * 1.0 + (1 - n_flip) * 0.2)
    assert m["single:alpha"]["mean_cost"] == pytest.approx(2.0)
    assert m["single:gamma"]["resolve_rate"] == 1.0
    assert m["spawn_all"]["mean_cost"] == pytest.approx(2.0 + 4.0 + 15.0)
    assert m["spawn_all"]["resolve_rate"] == 1.0
    # the oracle: flip -> alpha (2), swap -> beta (4)
    assert m["oracle"]["resolve_rate"] == 1.0
    assert m["oracle"]["mean_cost"] == pytest.approx(n_flip * 2.0 + (1 - n_flip) * 4.0)
    assert all(m["oracle"]["score"] >= v["score"] - 1e-9 for v in m.values())
    assert 0.0 < m["random"]["mean_cost"] < m["spawn_all"]["mean_cost"]


def test_best_cascade_is_chosen_on_train_with_a_stop_rule(sets) -> None:
    train, _ = sets
    table = CascadeTable(train)
    # alpha then beta resolves everything at 2 (flip) or 6 (swap) units: the best fixed order at this λ.
    assert table.best(LAM) == (1, 2)
    # with free compute any order that ends in a full fix ties; the cheapest costs are not needed
    assert table.pass_rate[table.seqs.index(table.best(0.0))] == pytest.approx(1.0)
    # at a prohibitive λ even one spawn does not pay, and the cheapest cascade wins
    assert table.cost[table.seqs.index(table.best(10.0))] == pytest.approx(min(table.cost))


def test_sequence_actor_skips_masked_and_stops() -> None:
    import numpy as np

    actor = SequenceActor([[4, 1, 2]], stop_visible=1.0)
    feats = np.zeros((1, num_features(2)), np.float32)
    obs = {"action_mask": np.array([[1, 1, 1, 0, 0]]), "features": feats}
    assert actor(obs, np.array([True]))[0] == 1  # delegate (4) masked: skipped
    feats[0, 4], feats[0, 5] = 1.0, 1.0  # best candidate passes every visible test
    assert actor(obs, np.array([False]))[0] == 0
    assert len(cascade_candidates(2, 2)) == 2 + 2 * 4
