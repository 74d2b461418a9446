"""What every training run sets up the same way: device, threads, seeds, the policy for an env's spaces."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_spawn.envs.config import ConfigError
from hrm_spawn.envs.paths import runs_dir
from hrm_spawn.trainers.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' asked for but torch sees no CUDA device")
    return torch.device(name)


def set_threads(config: TrainConfig) -> None:
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_policy(config: TrainConfig, env: Any):
    """The SpawnPolicy for ``env``'s action count, feature count and token length."""
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


def default_run_dir(config: TrainConfig) -> Path:
    return runs_dir() / f"{config.algo}-{time.strftime('%Y%m%d-%H%M%S')}-s{config.seed}"
