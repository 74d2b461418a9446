"""hrm-spawn train CONFIG [key=value ...] [--resume] [--out DIR]

Builds the envs and the HRM spawn policy from a ``TrainConfig``, runs ACT Q-learning (or MaskablePPO),
logs to TensorBoard under ``RUN/tb`` and writes checkpoints under ``RUN/checkpoints`` (see
trainers/checkpoint.py). ``--resume`` reloads the latest checkpoint of RUN and continues exactly
where the killed run stopped (weights, optimizer, replay buffer, counters, RNG state).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_spawn.envs.config import ConfigError, dump_config, load_config
from hrm_spawn.envs.paths import runs_dir
from hrm_spawn.envs.registry import SPAWN_ENV_ID
from hrm_spawn.trainers.checkpoint import (
    latest_checkpoint,
    load_state,
    load_train_config,
    load_weights,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hrm_spawn.trainers.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' asked for but torch sees no CUDA device")
    return torch.device(name)


def env_factory(config: TrainConfig, **overrides: Any) -> Callable[[], Any]:
    """A no-argument constructor of one env (a registered id, entry point or ``module:Class``)."""
    env_kwargs = {**config.env, **overrides}

    def make() -> Any:
        import hrm_spawn.envs  # noqa: F401  (registers the built-in env id)
        from hrm_spawn.envs.registry import make as make_env

        return make_env(config.env_id, config=env_kwargs)

    return make


def make_source(config: TrainConfig) -> tuple[Any, Any]:
    """(episode source, an env whose spaces size the policy) for ACT Q-learning.

    The built-in env in replay mode trains on a ``BatchedReplayEnv`` (numpy, many episodes per step);
    any other env id or mode runs ``act_q.num_envs`` gymnasium envs side by side.
    """
    from hrm_spawn.trainers.act_q import BatchedSource, GymSource

    lam = config.act_q.lam
    if config.env_id == SPAWN_ENV_ID and config.env.get("mode", "cached") == "replay":
        from hrm_spawn.envs.replay import BatchedReplayEnv, ReplaySpec
        from hrm_spawn.envs.spawn_env import SpawnEnv, load_env_config

        env_cfg = load_env_config(config.env)
        base = SpawnEnv(env_cfg)
        spec = ReplaySpec.from_config(env_cfg)
        batched = BatchedReplayEnv(
            base.tasks, base.tables(), spec, num_envs=config.act_q.num_envs, seed=config.seed
        )
        return BatchedSource(batched, range(len(base.tasks)), lam.low, lam.high), base
    make = env_factory(config, lam=[lam.low, lam.high])
    envs = [make() for _ in range(config.act_q.num_envs)]
    return GymSource(envs), envs[0]


def make_policy(config: TrainConfig, env: Any):
    from hrm_spawn.policies.spawn_policy import SpawnPolicy

    num_actions = int(env.action_space.n)
    num_features = int(env.observation_space["features"].shape[0])
    seq_len = int(env.observation_space["tokens"].shape[0])
    if seq_len != config.policy.seq_len:
        raise ConfigError(
            f"policy.seq_len is {config.policy.seq_len} but the env's tokens have length {seq_len}; "
            f"set env.seq_len or policy.seq_len so they agree"
        )
    return SpawnPolicy(config.policy, num_actions, num_features)


def set_threads(config: TrainConfig) -> None:
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_dir(config: TrainConfig) -> Path:
    return runs_dir() / f"{config.algo}-{time.strftime('%Y%m%d-%H%M%S')}-s{config.seed}"


def _episode_scalars(episodes: list) -> dict[str, float]:
    n = max(1, len(episodes))
    return {
        "episode/return": sum(e.pass_rate - e.lam * e.total_cost for e in episodes) / n,
        "episode/resolve_rate": sum(e.resolved for e in episodes) / n,
        "episode/pass_rate": sum(e.pass_rate for e in episodes) / n,
        "episode/cost": sum(e.total_cost for e in episodes) / n,
        "episode/steps": sum(e.steps for e in episodes) / n,
    }


def train_act_q(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Run ACT Q-learning; returns the last checkpoint. ``stop_after`` ends early (tests: a "kill")."""
    from torch.utils.tensorboard import SummaryWriter

    from hrm_spawn.trainers.act_q import ActQTrainer

    seed_everything(config.seed)
    set_threads(config)
    device = resolve_device(config.device)
    source, spaces_env = make_source(config)
    policy = make_policy(config, spaces_env)
    trainer = ActQTrainer(config, policy, source, device)
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = load_state(ckpt)
        trainer.load(
            {k: load_weights(ckpt, k) for k in ("policy", "target") if (ckpt / f"{k}.safetensors").is_file()},
            state["trainer"],
        )
        set_rng_state(state["rng"])
    writer = SummaryWriter(str(run_dir / "tb"))
    total = config.act_q.iterations
    bar = _progress(total, trainer.iteration, progress)
    last = ckpt
    try:
        while trainer.iteration < total:
            out = trainer.step()
            episodes = out.pop("episodes")
            it = trainer.iteration
            if it % config.log_every == 0 or it == total:
                _log(writer, out, episodes, trainer.env_steps)
            bar.update(1)
            bar.set_postfix(
                ret=f"{_episode_scalars(episodes)['episode/return']:.3f}",
                loss=f"{out.get('loss/total', 0):.3f}",
            )
            if it % config.checkpoint_every == 0 or it == total:
                last = _checkpoint(run_dir, config, trainer)
            if stop_after is not None and it >= stop_after:
                break
    finally:
        bar.close()
        writer.close()
        source.close()
    assert last is not None
    return last


def _checkpoint(run_dir: Path, config: TrainConfig, trainer: Any) -> Path:
    state = {"trainer": trainer.state_dict(), "rng": rng_state()}
    meta = {"iteration": trainer.iteration, "env_steps": trainer.env_steps, "episodes": trainer.episodes_done}
    path = save_checkpoint(run_dir, trainer.iteration, config, trainer.weights(), state, meta)
    prune_checkpoints(run_dir, keep=2)
    return path


def _log(writer: Any, stats: dict[str, Any], episodes: list, env_steps: int) -> None:
    for key, value in {**stats, **_episode_scalars(episodes)}.items():
        writer.add_scalar(key, value, env_steps)
    halts = np.asarray([e.steps - 1 for e in episodes if e.actions[-1] == 0])
    if halts.size:
        writer.add_histogram("episode/halting_step", halts, env_steps)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="act_q", unit="it", disable=not enabled, file=sys.stderr)


def run_training(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    if config.algo == "ppo":
        from hrm_spawn.trainers.ppo import train_ppo

        return train_ppo(config, run_dir, resume=resume, progress=progress)
    return train_act_q(config, run_dir, resume=resume, progress=progress)


def cli_train(args: argparse.Namespace) -> int:
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        ckpt = latest_checkpoint(Path(args.out))
        if ckpt is None:
            raise ConfigError(f"--resume: {args.out} has no checkpoint to continue from")
        config = load_train_config(ckpt)
        if args.overrides:
            print("note: overrides are ignored with --resume; the run's own config is used", file=sys.stderr)
    else:
        config = load_config(TrainConfig, args.config, args.overrides)
    run_dir = Path(args.out) if args.out else default_run_dir(config)
    print(f"run directory: {run_dir}  (tensorboard --logdir {run_dir / 'tb'})", file=sys.stderr)
    ckpt = run_training(config, run_dir, resume=args.resume)
    print(json.dumps({"checkpoint": str(ckpt), "run_dir": str(run_dir)}))
    return 0
