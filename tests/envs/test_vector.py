"""The batched replay env as a gymnasium VectorEnv and an SB3 VecEnv; gymnasium.make / make_vec as users call them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from custom_env_example import TOY_AGENTS, fill_toy_store, toy_tasks

from hrm_spawn.envs.replay import BatchedReplayEnv, load_replay
from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv
from hrm_spawn.envs.store import OutcomeStore
from hrm_spawn.envs.vector import ReplayVecEnv, ReplayVectorEnv

GYM_ID = "hrm_spawn.envs:HRMSpawn/SWESmith-v0"  # gymnasium 1.x imports the module named before ':'


@pytest.fixture
def toy_files(tmp_path):
    tasks = toy_tasks(4)
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text("\n".join(t.model_dump_json() for t in tasks))
    store = OutcomeStore(tmp_path / "s.sqlite")
    fill_toy_store(store, tasks, TOY_AGENTS)
    args = {"tasks": str(task_file), "store": str(store.path), "agents": TOY_AGENTS, "mode": "replay"}
    return {**args, "seq_len": 128, "max_steps": 5, "lam": [0.0, 0.05]}


def _random_actions(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.choice(np.flatnonzero(m)) for m in masks.astype(bool)])


def test_gym_make_with_flat_keyword_arguments(toy_files):
    env = gym.make(GYM_ID, **toy_files)
    assert "PassiveEnvChecker" in str(env)  # the passive checker is on
    obs, info = env.reset(seed=0)
    assert info["instance_id"].startswith("toy-") and obs["tokens"].shape == (128,)
    assert env.unwrapped.config.mode == "replay" and len(env.unwrapped.tasks) == 4  # a path, not characters
    obs, reward, *_ = env.step(int(np.flatnonzero(obs["action_mask"])[1]))
    assert np.isfinite(reward)
    env.close()


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"taks": "x.jsonl"}, r"'taks' \(did you mean 'tasks'\?\)"),
        ({"mode": "replaying"}, "key 'mode'"),
        ({"tasks": 3}, "tasks= takes a path or a list of TaskInstance"),
        ({"tasks": ["not a task"]}, r"tasks\[0\] is a str"),
    ],
)
def test_bad_keyword_arguments_are_named(toy_files, bad, needle):
    with pytest.raises((TypeError, ValueError), match=needle):
        gym.make(GYM_ID, **{**toy_files, **bad})


def test_make_vec_gives_the_batched_env_with_same_step_autoreset(toy_files):
    vec = gym.make_vec(GYM_ID, num_envs=3, **toy_files)
    assert isinstance(vec, ReplayVectorEnv) and vec.observation_space["features"].shape[0] == 3
    obs, _ = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(30):
        obs, reward, term, trunc, info = vec.step(_random_actions(obs["action_mask"], rng))
        assert vec.observation_space.contains(obs) and reward.shape == (3,)
        for row in np.flatnonzero(term | trunc):
            finished += 1
            assert info["_final_obs"][row] and vec.single_observation_space.contains(info["final_obs"][row])
            assert info["final_info"][row]["instance_id"].startswith("toy-")
    assert finished > 0
    vec.close()


def test_sb3_vec_env_matches_the_batched_env_and_hands_on_terminal_observations(toy_files):
    config = EnvConfig(**toy_files)
    replay = load_replay(config)
    reference = BatchedReplayEnv.from_replay(replay, num_envs=4, seed=3)
    vec = ReplayVecEnv.from_replay(replay, num_envs=4)
    vec.seed(3)
    obs, ref_obs = vec.reset(), reference.reset()
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(40):
        assert np.array_equal(obs["features"], ref_obs["features"])
        masks = np.stack(vec.env_method("action_masks"))
        assert np.array_equal(masks, reference.action_masks())
        actions = _random_actions(masks, rng)
        obs, reward, done, infos = vec.step(actions)
        ref_obs, ref_reward, *_ = reference.step(actions)
        assert np.allclose(reward, ref_reward)
        for row in np.flatnonzero(done):
            episodes += 1
            assert {"terminal_observation", "TimeLimit.truncated", "episode_return"} <= set(infos[row])
    assert episodes > 0 and vec.has_attr("action_masks")


def test_maskable_ppo_learns_on_the_batched_vec_env(toy_files):
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecMonitor

    vec = VecMonitor(ReplayVecEnv.from_replay(load_replay(EnvConfig(**toy_files)), num_envs=4, seed=0))
    model = MaskablePPO("MultiInputPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps >= 64 and len(model.ep_info_buffer) > 0  # VecMonitor saw finished episodes


def test_in_memory_tasks_are_split_like_a_file(tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    # one function per bug, so the tasks fall into separate groups (toy patches all touch toy.py)
    tasks = [t.model_copy(update={"entity": f"toy.py::f{i}"}) for i, t in enumerate(toy_tasks(8))]
    fill_toy_store(store, tasks, TOY_AGENTS)
    sides = {
        split: SpawnEnv(agents=TOY_AGENTS, mode="replay", split=split, tasks=tasks, store=store).tasks
        for split in ("train", "heldout")
    }
    assert len(sides["train"]) + len(sides["heldout"]) == 8 and sides["heldout"]
    assert not {t.instance_id for t in sides["train"]} & {t.instance_id for t in sides["heldout"]}
