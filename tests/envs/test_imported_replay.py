"""Replaying a table imported from another harness: costs in its store's unit (USD here), never free."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.imported_table import RAW_AGENT, import_fixture_table

from hrm_spawn.envs.env_config import load_env_config
from hrm_spawn.envs.replay import BatchedReplayEnv, load_replay
from hrm_spawn.envs.spawn_env import SpawnEnv


@pytest.fixture
def imported(tmp_path):
    return import_fixture_table(tmp_path)


def test_replay_costs_are_the_tables_dollars(imported) -> None:
    replay = load_replay(load_env_config(imported.env()))
    assert replay.cost_unit == "usd"
    rows = imported.rows()
    seen = 0
    for task, table in zip(replay.tasks, replay.tables, strict=True):
        assert table.cost_unit == "usd"
        for (k, _seed, _start), job in table.outcomes.items():
            raw = RAW_AGENT[replay.rules.agents[k]]
            assert job.cost == pytest.approx(rows[(task.instance_id, raw)]["cost_usd"]) and job.cost > 0
            seen += 1
    assert seen == 18


def test_spawn_env_and_batched_env_charge_the_same_dollars(imported) -> None:
    config = load_env_config(imported.env())
    env = SpawnEnv(config)
    assert env.cost_unit == "usd"
    bat = BatchedReplayEnv.from_replay(env.replay(), num_envs=1, seed=0, with_tokens=False)
    rows = imported.rows()
    for index, task in enumerate(env.tasks):
        env.reset(options={"task_index": index, "lam": 0.1})
        bat.reset_envs(np.arange(1), np.asarray([index]), np.asarray([0.1]))
        spent = 0.0
        for k, agent in enumerate(env.agent_names):  # spawn_all
            _, reward, *_ = env.step(env.layout.spawn(k))
            _, breward, *_, final = bat.step(np.asarray([env.layout.spawn(k)]))
            usd = rows[(task.instance_id, RAW_AGENT[agent])]["cost_usd"]
            spent += usd
            assert reward == pytest.approx(-0.1 * usd) == breward[0]
        _, _, terminated, _, info = env.step(0)
        _, _, _, _, final = bat.step(np.asarray([0]))
        assert terminated and spent > 0 and info["cost"] == pytest.approx(spent)
        assert final["cost"][0] == pytest.approx(spent)


def _spawn_all(env: SpawnEnv, index: int) -> dict:
    env.reset(options={"task_index": index, "lam": 0.0})
    for k in range(env.K):
        env.step(env.layout.spawn(k))
    return env.step(0)[4]


def test_observe_none_sees_nothing_and_submits_the_first_run(imported) -> None:
    env = SpawnEnv(load_env_config(imported.env(observe="none")))
    assert all(job.visible == 0.0 for table in env.tables() for job in table.outcomes.values())
    assert env.replay().observe == "none"
    sympy = next(i for i, t in enumerate(env.tasks) if t.instance_id == "sympy__sympy-20590")
    info = _spawn_all(env, sympy)  # only strong resolves it, but nothing tells its run from cheap's
    assert info["best_visible"] == 0.0 and not info["resolved"]


def test_observe_verifier_sees_the_resolved_flag(imported) -> None:
    env = SpawnEnv(load_env_config(imported.env(observe="verifier")))
    for table in env.tables():
        for job in table.outcomes.values():
            assert job.visible == float(job.resolved)
    sympy = next(i for i, t in enumerate(env.tasks) if t.instance_id == "sympy__sympy-20590")
    info = _spawn_all(env, sympy)
    assert info["best_visible"] == 1.0 and info["resolved"]
    obs, _ = env.reset(options={"task_index": sympy, "lam": 0.0})
    obs, *_ = env.step(env.layout.spawn(2))  # strong: the verifier's verdict is in the features
    assert obs["features"][4] == 1.0  # GLOBAL_FEATURES "best_visible"


def test_observe_is_checked(imported) -> None:
    from hrm_spawn.envs.config import ConfigError

    with pytest.raises(ConfigError, match="observe"):
        load_env_config(imported.env(observe="oracle"))
