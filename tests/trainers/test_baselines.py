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


def test_cascades_cover_every_order_of_up_to_five_agents() -> None:
    four = cascade_candidates(4, 3)
    assert len(four) == len(set(four))
    orders = [s for s in four if len(s) == 4]
    assert len(orders) == 24 and all(sorted(s) == [1, 2, 3, 4] for s in orders)
    assert len([s for s in cascade_candidates(6, 3) if len(s) > 3]) == 6 * 5 * 4 * 3 + 6 * 5 * 4 * 3 * 2
    assert max(len(s) for s in cascade_candidates(6, 3)) == 5  # the limit: orders of five agents at most


def test_with_four_agents_the_four_step_cascade_can_win(tmp_path) -> None:
    """Each of four agents resolves its own quarter of the tasks (and says so): only trying all four, in
    any order, with the stop rule, resolves everything; a cascade of three leaves a quarter unresolved."""
    from hrm_spawn.envs.agent_slots import resolve_agents
    from hrm_spawn.envs.env_config import load_env_config
    from hrm_spawn.envs.replay import load_replay
    from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
    from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore
    from hrm_spawn.envs.tasks import TaskInstance
    from hrm_spawn.trainers.evaluate import ReplaySet

    agents = ["a0@1", "a1@1", "a2@1", "a3@1"]
    tasks = [TaskInstance(instance_id=f"t{i}", repo="o/r", replay_only=True) for i in range(8)]
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        for i, task in enumerate(tasks):
            for k in range(4):
                fixed = i % 4 == k
                result = AgentResult(
                    patch=f"--- a{k} t{i}\n",
                    status="ok",
                    cost=Cost(sandbox_s=1.0),
                    visible_pass_rate=float(fixed),
                )
                evaluation = Evaluation(int(fixed), 1, 1, 1)
                store.put(OutcomeKey(task.instance_id, f"a{k}", "1", 0), Outcome(result, evaluation))
        config = load_env_config({"agents": agents, "mode": "replay", "seeds_per_agent": 1, "max_steps": 4})
        slots = resolve_agents(agents, build=False)
        rs = ReplaySet.of(load_replay(config, tasks=tasks, store=store, slots=slots))
    table = CascadeTable(rs)
    best = table.best(0.01)
    assert len(best) == 4 and sorted(best) == [1, 2, 3, 4]
    assert table.pass_rate[table.seqs.index(best)] == 1.0
    assert max(p for s, p in zip(table.seqs, table.pass_rate, strict=True) if len(s) <= 3) == 0.75
    # the stop rule: on average 2.5 of the four agents run before the one that fixes the task
    assert table.cost[table.seqs.index(best)] == pytest.approx(2.5)
