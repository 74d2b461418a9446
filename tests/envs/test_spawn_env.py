"""SpawnEnv: spaces and checkers, masks, rewards, replay misses, vector envs, registration."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from custom_env_example import TOY_AGENTS, ToyTasksEnv, fill_toy_store, toy_patch, toy_tasks

import hrm_spawn.envs.registry  # noqa: F401  (registers HRMSpawn/SWESmith-v0)
from hrm_spawn.envs.config import ConfigError
from hrm_spawn.envs.features import num_features
from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.spawn_env import EnvConfig, MaskedActionError, ReplayMissError, SpawnEnv
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore, patch_sha


def outcome(patch: str, visible: float, sandbox_s: float, f2p: int, status: str = "ok") -> Outcome:
    result = AgentResult(
        patch=patch, status=status, cost=Cost(sandbox_s=sandbox_s), visible_pass_rate=visible
    )
    return Outcome(result, Evaluation(f2p_passed=f2p, f2p_total=2, p2p_passed=4, p2p_total=4))


@pytest.fixture
def hand(tmp_path):
    """One task (test_run_s 2), agents a and b, hand-written outcomes."""
    task = toy_tasks(1)[0]
    store = OutcomeStore(tmp_path / "s.sqlite")
    p1, p2 = toy_patch(1), toy_patch(2)
    store.put(OutcomeKey(task.instance_id, "a", "1", 0), outcome(p1, 0.5, 4.0, 1))  # 2 units, hidden 0.5
    store.put(OutcomeKey(task.instance_id, "a", "1", 1), outcome("", 0.0, 2.0, 0, "budget_exhausted"))
    store.put(OutcomeKey(task.instance_id, "b", "1", 0), outcome(p2, 0.25, 8.0, 2))  # 4 units, hidden 1.0
    store.put(OutcomeKey(task.instance_id, "b", "1", 0, patch_sha(p1)), outcome(p2, 1.0, 6.0, 2))  # delegate
    config = EnvConfig(agents=["a@1", "b@1"], mode="replay", lam=0.1, seq_len=128, max_steps=4, max_cost=10.0)
    return SpawnEnv(config, tasks=[task], store=store), p1, p2


def test_spaces(hand):
    env, _, _ = hand
    assert env.action_space.n == 5
    assert env.observation_space["features"].shape == (num_features(2),) == (27,)
    assert env.observation_space["tokens"].shape == (128,)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(info["action_mask"], [1, 1, 1, 0, 0])


def test_rewards_masks_and_halt(hand):
    env, p1, _ = hand
    obs, info = env.reset(seed=0)
    obs, r, term, trunc, info = env.step(1)  # spawn a: 4 s / 2 s = 2 units
    assert r == pytest.approx(-0.2) and not (term or trunc)
    assert info["candidate"] == patch_sha(p1) and info["cost"] == pytest.approx(2.0)
    # a's seed 1 exists; delegating p1: a has no outcome (masked), b has one
    np.testing.assert_array_equal(obs["action_mask"], [1, 1, 1, 0, 1])
    feats = obs["features"]
    assert feats[0] == pytest.approx(0.1) and feats[1] == pytest.approx(0.25)  # λ, step/max_steps
    assert feats[2] == pytest.approx(0.2) and feats[3] == pytest.approx(0.8)  # cost spent / left
    assert feats[4] == pytest.approx(0.5) and feats[5] == 1.0  # best visible, has candidate
    assert feats[6] == pytest.approx(0.1 * 10)  # λ·max_cost
    # the task's failure profile: 1 of its 2 tests fails (one failing, many failing); no failure lines
    np.testing.assert_array_equal(feats[7:19], [1, 0, 1] + [0] * 9)
    np.testing.assert_allclose(
        feats[19:23], [0.5, 0.0, 0.5, 0.2]
    )  # agent a: spawns/S, delegs, last vis, last cost
    with pytest.raises(MaskedActionError, match="delegate a.*is masked"):
        env.step(3)
    obs, r, term, trunc, info = env.step(2)  # spawn b: 4 units, visible 0.25 < 0.5: best stays p1
    assert r == pytest.approx(-0.4) and info["best_visible"] == 0.5
    obs, r, term, trunc, info = env.step(0)  # halt: submits p1 (best visible), hidden pass-rate 0.5
    assert term and not trunc and r == pytest.approx(0.5)
    assert info["pass_rate"] == pytest.approx(0.5) and info["resolved"] is False
    assert info["episode_return"] == pytest.approx(-0.2 - 0.4 + 0.5)


def test_delegation_and_budget_truncation(hand):
    env, _, p2 = hand
    env.config.max_steps = 5
    env.reset(seed=0)
    env.step(1)  # a: 2 units
    obs, r, term, trunc, info = env.step(4)  # delegate p1 to b: 3 units, visible 1.0 -> best, hidden 1.0
    assert info["candidate"] == patch_sha(p2) and r == pytest.approx(-0.3)
    assert not obs["action_mask"][3:].any()  # a visibly solved candidate is not delegated again
    obs, r, term, trunc, info = env.step(2)  # b spawn: 4 units -> 9 units; then a seed 1: 1 unit -> 10
    obs, r, term, trunc, info = env.step(1)
    assert trunc and not term and info["truncated_reason"] == "max_cost"
    assert r == pytest.approx(-0.1 + 1.0) and info["resolved"] is True  # the limit submits the best


def test_step_limit_and_tokens(hand):
    env, _, _ = hand
    obs0, _ = env.reset(seed=0)
    env.config.max_steps = 2
    obs, *_ = env.step(1)
    assert not np.array_equal(obs["tokens"], obs0["tokens"])  # the history region holds the return
    assert "+a 0.50 2.0" in env_text(obs["tokens"])
    obs, r, term, trunc, info = env.step(1)
    assert trunc and info["truncated_reason"] == "max_steps" and "!budg" in env_text(obs["tokens"])


def env_text(tokens: np.ndarray) -> str:
    from hrm_spawn.policies.tokenizer import ByteTokenizer

    return ByteTokenizer(len(tokens)).decode(tokens)


def test_replay_miss_names_the_key(hand):
    env, _, _ = hand
    env.config.mask_missing = False
    env.reset(seed=0)
    env.step(1)
    with pytest.raises(ReplayMissError, match=r"agent='a'.*seed=0.*start_patch="):
        env.step(3)  # delegate to a: not in the store


def test_invalid_action_and_step_before_reset(hand):
    env, _, _ = hand
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset()
    with pytest.raises(ValueError, match="not in Discrete"):
        env.step(9)


def test_lambda_range_is_sampled_and_observed(tmp_path):
    env = ToyTasksEnv(store=tmp_path / "s.sqlite")
    lams = {round(env.reset(seed=s)[1]["lam"], 6) for s in range(8)}
    assert len(lams) == 8 and all(0.0 <= v <= 0.05 for v in lams)
    obs, info = env.reset(seed=3, options={"lam": 0.2})
    assert obs["features"][0] == pytest.approx(0.2)


def test_checkers_pass(tmp_path):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    gym_check(ToyTasksEnv(store=tmp_path / "s.sqlite"), skip_render_check=True)
    sb3_check(ToyTasksEnv(store=tmp_path / "s.sqlite"), warn=True)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="lam"):
        SpawnEnv({"lam": [0.5, 0.1], "mode": "replay"}, tasks=toy_tasks(1), store=tmp_path / "x.sqlite")
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        SpawnEnv({"nope": 1}, tasks=toy_tasks(1))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpawnEnv({"mode": "replay", "agents": ["a@1"]}, tasks=toy_tasks(1), store=tmp_path / "missing.sqlite")


def test_registered_and_made_from_config_file(tmp_path):
    tasks = toy_tasks(2)
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text("\n".join(t.model_dump_json() for t in tasks))
    store = OutcomeStore(tmp_path / "s.sqlite")
    fill_toy_store(store, tasks, TOY_AGENTS)
    env = gym.make(
        "HRMSpawn/SWESmith-v0",
        config={
            "tasks": str(task_file),
            "agents": TOY_AGENTS,
            "mode": "replay",
            "store": str(store.path),
            "seq_len": 128,
        },
    )
    obs, info = env.reset(seed=0)
    assert info["instance_id"] in {"toy-0", "toy-1"} and obs["action_mask"][1:4].all()
    env.close()


def _toy(path: str):
    return lambda: ToyTasksEnv(store=path)


def test_gymnasium_async_vector_env(tmp_path):
    path = str(tmp_path / "s.sqlite")
    ToyTasksEnv(store=path)  # fill once
    vec = gym.vector.AsyncVectorEnv([_toy(path) for _ in range(2)])
    obs, info = vec.reset(seed=0)
    assert obs["tokens"].shape == (2, 256)
    rng = np.random.default_rng(0)
    for _ in range(20):
        masks = obs["action_mask"].astype(bool)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs, reward, term, trunc, info = vec.step(actions)
        assert np.isfinite(reward).all()
    vec.close()


def test_sb3_subproc_vec_env(tmp_path):
    from stable_baselines3.common.vec_env import SubprocVecEnv

    path = str(tmp_path / "s.sqlite")
    ToyTasksEnv(store=path)
    vec = SubprocVecEnv([_toy(path) for _ in range(2)], start_method="fork")
    obs = vec.reset()
    assert obs["features"].shape == (2, 31)
    rng = np.random.default_rng(0)
    for _ in range(20):
        masks = np.stack(vec.env_method("action_masks"))
        obs, reward, done, infos = vec.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
        assert np.array_equal(obs["action_mask"].astype(bool), np.stack(vec.env_method("action_masks")))
    vec.close()
