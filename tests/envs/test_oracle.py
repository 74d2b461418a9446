"""The oracle on hand-filled stores: cheapest sequence to the best reachable score."""

from __future__ import annotations

import numpy as np
import pytest
from custom_env_example import ToyTasksEnv, toy_patch, toy_tasks

from hrm_spawn.envs.oracle import oracle, oracle_for_env
from hrm_spawn.envs.replay import ReplaySpec
from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore, patch_sha


def put(store, agent, seed, start, patch, visible, seconds, f2p):
    result = AgentResult(patch=patch, status="ok", cost=Cost(sandbox_s=seconds), visible_pass_rate=visible)
    store.put(
        OutcomeKey("toy-0", agent, "1", seed, patch_sha(start)),
        Outcome(result, Evaluation(f2p_passed=f2p, f2p_total=2, p2p_passed=1, p2p_total=1)),
    )


@pytest.fixture
def env(tmp_path):
    """a is cheap and half right; b is dear and right; a continuing a's candidate is right and cheap."""
    store = OutcomeStore(tmp_path / "s.sqlite")
    p1, p2, p3 = toy_patch(1), toy_patch(2), toy_patch(3)
    put(store, "a", 0, "", p1, 0.5, 2.0, 1)  # 1 unit
    put(store, "a", 1, "", p1, 0.5, 2.0, 1)
    put(store, "b", 0, "", p2, 1.0, 20.0, 2)  # 10 units, resolved
    put(store, "a", 0, p1, p3, 0.9, 4.0, 2)  # delegate p1 -> a: 2 units, resolved
    put(store, "b", 0, p1, p2, 1.0, 20.0, 2)
    config = EnvConfig(agents=["a@1", "b@1"], mode="replay", seq_len=128, max_steps=4, max_cost=30.0, lam=0.0)
    return SpawnEnv(config, tasks=toy_tasks(1), store=store)


def test_cheapest_sequence_to_the_best_score(env):
    result = oracle_for_env(env, "toy-0")
    assert result.actions == [1, 3, 0] and result.action_names == ["spawn a", "delegate a", "halt"]
    assert result.cost == pytest.approx(3.0) and result.score == 1.0 and result.resolved


def test_limits_change_the_answer(env):
    # the rules are a view of the env config: other limits, another config
    spec = ReplaySpec.from_config(env.config.model_copy(update={"max_steps": 1}))
    # no room to delegate: only b's spawn reaches 1.0, and the step limit ends it
    result = oracle(env.task_table("toy-0"), spec)
    assert result.actions == [2] and result.cost == pytest.approx(10.0) and result.score == 1.0
    # any first run spends the budget: b's spawn is the only way
    spec = ReplaySpec.from_config(env.config.model_copy(update={"max_steps": 4, "max_cost": 0.5}))
    result = oracle(env.task_table("toy-0"), spec)
    assert result.actions == [2] and result.score == 1.0 and result.cost == pytest.approx(10.0)


def test_nothing_reachable_is_halt(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    put(store, "a", 0, "", "", 0.0, 2.0, 0)  # the only run returns no change
    env = SpawnEnv(EnvConfig(agents=["a@1"], mode="replay", seq_len=128), tasks=toy_tasks(1), store=store)
    result = oracle_for_env(env, "toy-0")
    assert result.actions == [0] and result.score == 0.0 and result.cost == 0.0


def test_replaying_the_oracle_gives_its_score_and_beats_random(tmp_path):
    env = ToyTasksEnv(num_tasks=4, store=tmp_path / "s.sqlite")
    rng = np.random.default_rng(0)
    for task in env.tasks:
        best = oracle_for_env(env, task.instance_id)
        env.reset(options={"instance_id": task.instance_id, "lam": 0.0})
        for action in best.actions:
            _, _, term, trunc, info = env.step(action)
        assert term or trunc
        assert info["pass_rate"] == pytest.approx(best.pass_rate) and info["cost"] == pytest.approx(best.cost)
        for _ in range(30):  # no random episode scores higher, and none reaches the score cheaper
            env.reset(options={"instance_id": task.instance_id, "lam": 0.0})
            done = False
            while not done:
                _, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
                done = term or trunc
            score = info["pass_rate"]
            assert score <= best.score + 1e-12
            if score >= best.score - 1e-12:
                assert info["cost"] >= best.cost - 1e-9
