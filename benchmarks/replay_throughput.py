"""Replay throughput: env steps per second from the outcome store in one process (goal 50,000).

The figure is the batched replay env (``envs.replay.BatchedReplayEnv``: 4096 episodes stepped together
with numpy, full observations: tokens, features, masks; random masked actions; auto-reset). Meta also
reports one SpawnEnv in replay mode and gymnasium's SyncVectorEnv over 8 SpawnEnvs, for comparison.
The store is a synthetic one (tests/envs/custom_env_example.py) of 64 tasks x 5 agents.
Writes replay_steps_per_s.json into the bench output folder (_results.results_dir()).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "envs")]

from _results import write_result  # noqa: E402
from custom_env_example import fill_toy_store, toy_tasks  # noqa: E402

from hrm_spawn.envs.replay import BatchedReplayEnv, ReplaySpec  # noqa: E402
from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402

AGENTS = [f"agent{i}@1" for i in range(5)]
NUM_ENVS = 4096
SECONDS = 3.0


def batched_rate(env: SpawnEnv, tokens: bool) -> float:
    bat = BatchedReplayEnv(
        env.tasks, env.tables(), ReplaySpec.from_config(env.config), NUM_ENVS, seed=0, with_tokens=tokens
    )
    obs = bat.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        actions = (rng.random(obs["action_mask"].shape) * obs["action_mask"]).argmax(1)
        obs, *_ = bat.step(actions)
        steps += NUM_ENVS
    return steps / (time.perf_counter() - start)


def single_rate(env: SpawnEnv) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        _, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        steps += 1
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_rate(config: EnvConfig, tasks, store_path: str, n: int = 8) -> float:
    import gymnasium as gym

    vec = gym.vector.SyncVectorEnv(
        [lambda: SpawnEnv(config, tasks=tasks, store=store_path) for _ in range(n)]
    )
    obs, _ = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        actions = (rng.random(obs["action_mask"].shape) * obs["action_mask"]).argmax(1)
        obs, *_ = vec.step(actions)
        steps += n
    vec.close()
    return steps / (time.perf_counter() - start)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hrm-bench-replay-"))
    tasks = toy_tasks(64)
    store = OutcomeStore(tmp / "outcomes.sqlite")
    fill_toy_store(store, tasks, AGENTS, seeds=2, delegate_seeds=1)
    config = EnvConfig(agents=AGENTS, mode="replay", seq_len=512, max_steps=8, max_cost=50.0, lam=(0.0, 0.05))
    env = SpawnEnv(config, tasks=tasks, store=store)
    value = batched_rate(env, tokens=True)
    meta = {
        "env": f"BatchedReplayEnv, {NUM_ENVS} episodes in one process, tokens+features+mask, random masked actions",
        "batched_without_tokens_steps_per_s": round(batched_rate(env, tokens=False)),
        "spawn_env_replay_steps_per_s": round(single_rate(env)),
        "gymnasium_sync_vector_env_8_steps_per_s": round(vector_rate(config, tasks, str(store.path))),
        "store": f"synthetic: {len(tasks)} tasks x {len(AGENTS)} agents, {len(store)} outcomes",
        "config": {"seq_len": 512, "max_steps": 8, "seeds_per_agent": 2},
    }
    write_result("replay_steps_per_s", value, "steps/s", 50000, True, meta)


if __name__ == "__main__":
    main()
