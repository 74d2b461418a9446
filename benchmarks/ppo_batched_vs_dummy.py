"""PPO on the batched replay VecEnv vs a DummyVecEnv of SpawnEnvs: training env steps per second, ratio (goal 5).

The same MaskablePPO run (HRM extractor, the hrm-tiny preset at seq_len 64, 32 envs, 16 steps per env per
rollout, one epoch) learns for the same number of steps on ``envs.vector.ReplayVecEnv`` (one
``BatchedReplayEnv``) and on SB3's ``DummyVecEnv`` over 32 SpawnEnvs in replay mode, which is what
``trainers/ppo.py`` used before. The figure is whole-training steps/s (collection and updates) of the
first over the second; meta also gives each side's steps/s, the collection-only ratio, and the same
ratio with SB3's small MLP policy (``MultiInputPolicy``), where the env's share of the time is larger.
The store is a synthetic one (tests/envs/custom_env_example.py) of 16 tasks x 5 agents.
Writes benchmarks/results/ppo_batched_vs_dummy_ratio.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "envs")]

import torch  # noqa: E402
from _results import write_result  # noqa: E402
from custom_env_example import fill_toy_store, toy_tasks  # noqa: E402

from hrm_spawn.envs.config import load_config  # noqa: E402
from hrm_spawn.envs.replay import load_replay  # noqa: E402
from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402
from hrm_spawn.envs.vector import ReplayVecEnv  # noqa: E402
from hrm_spawn.policies.config import HRMConfig  # noqa: E402

AGENTS = [f"agent{i}@1" for i in range(5)]
NUM_ENVS, N_STEPS, SEQ_LEN = 32, 16, 64


def _model(venv, policy_config: dict | None):
    from sb3_contrib import MaskablePPO

    from hrm_spawn.policies.sb3 import HRMMaskablePolicy

    return MaskablePPO(
        HRMMaskablePolicy if policy_config else "MultiInputPolicy",
        venv,
        n_steps=N_STEPS,
        batch_size=256,
        n_epochs=1,
        gamma=1.0,
        seed=0,
        device="cpu",
        policy_kwargs={"policy_config": policy_config} if policy_config else None,
    )


def _rate(venv, policy_config: dict | None, rollouts: int) -> tuple[float, float]:
    """(training steps/s, collection-only steps/s) over ``rollouts`` rollouts after one warm-up."""
    from stable_baselines3.common.vec_env import VecMonitor

    model = _model(VecMonitor(venv), policy_config)
    per_rollout = NUM_ENVS * N_STEPS
    model.learn(per_rollout)  # warm-up: first forward passes, buffers
    collect = {"s": 0.0}
    original = model.collect_rollouts

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        collect["s"] += time.perf_counter() - start
        return out

    model.collect_rollouts = timed
    start = time.perf_counter()
    model.learn(per_rollout * rollouts, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    steps = per_rollout * rollouts
    return steps / wall, steps / collect["s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=3, help="timed rollouts per side (after one warm-up)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="hrm-bench-ppo-"))
    tasks = toy_tasks(16)
    store = OutcomeStore(tmp / "outcomes.sqlite")
    fill_toy_store(store, tasks, AGENTS, seeds=2, delegate_seeds=1)
    config = EnvConfig(
        agents=AGENTS, mode="replay", seq_len=SEQ_LEN, max_steps=8, max_cost=50.0, lam=(0.0, 0.05)
    )
    policy = load_config(HRMConfig, "policy/hrm-tiny", [f"seq_len={SEQ_LEN}"]).model_dump()
    from stable_baselines3.common.vec_env import DummyVecEnv

    replay = load_replay(config, tasks=tasks, store=store)
    dummy = DummyVecEnv([lambda: SpawnEnv(config, tasks=tasks, store=store) for _ in range(NUM_ENVS)])
    fast, fast_collect = _rate(ReplayVecEnv.from_replay(replay, NUM_ENVS, seed=0), policy, args.rollouts)
    slow, slow_collect = _rate(dummy, policy, args.rollouts)
    mlp_fast, _ = _rate(ReplayVecEnv.from_replay(replay, NUM_ENVS, seed=0), None, args.rollouts)
    mlp_slow, _ = _rate(dummy, None, args.rollouts)
    meta = {
        "batched_steps_per_s": round(fast),
        "dummy_steps_per_s": round(slow),
        "collection_only_ratio": round(fast_collect / slow_collect, 2),
        "batched_collection_steps_per_s": round(fast_collect),
        "dummy_collection_steps_per_s": round(slow_collect),
        "mlp_policy_ratio": round(mlp_fast / mlp_slow, 2),
        "mlp_batched_steps_per_s": round(mlp_fast),
        "mlp_dummy_steps_per_s": round(mlp_slow),
        "setup": f"MaskablePPO + HRM extractor (hrm-tiny, seq_len {SEQ_LEN}), {NUM_ENVS} envs, "
        f"n_steps {N_STEPS}, 1 epoch, {args.rollouts} timed rollouts, 1 torch thread",
        "store": f"synthetic: {len(tasks)} tasks x {len(AGENTS)} agents, {len(store)} outcomes",
    }
    write_result("ppo_batched_vs_dummy_ratio", fast / slow, "x", 5.0, True, meta)


if __name__ == "__main__":
    main()
