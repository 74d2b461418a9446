"""stable-baselines3 / sb3-contrib adapters: an HRM features extractor and a MaskablePPO policy class.

    MaskablePPO("MultiInputPolicy", env, policy_kwargs=dict(
        features_extractor_class=HRMExtractor, features_extractor_kwargs=dict(policy_config="policy/hrm-tiny")))

or ``MaskablePPO(HRMMaskablePolicy, env, policy_kwargs=dict(policy_config="policy/hrm-tiny"))``.

Why a fresh carry per forward: SB3 evaluates minibatches of observations shuffled across time and
envs, so the row that came before in a batch is not the previous step of the same episode, and the
rollout buffer stores no recurrent state. Each forward therefore starts from the fixed initial states
and runs one segment. The ACT trainer (trainers/act_q.py) steps episodes in order and keeps the carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from hrm_spawn.core.config import load_config
from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.hrm import HRMCore, resolve_dtype

ConfigLike = HRMConfig | dict[str, Any] | str | Path


def as_config(policy_config: ConfigLike) -> HRMConfig:
    """An HRMConfig from a config, a dict of fields, or a YAML path / preset name such as ``policy/hrm-tiny``."""
    if isinstance(policy_config, HRMConfig):
        return policy_config
    if isinstance(policy_config, dict):
        return HRMConfig.model_validate(policy_config)
    return load_config(HRMConfig, policy_config)


class HRMExtractor(BaseFeaturesExtractor):
    """Runs one HRM segment on the Dict observation; the features are z_H at position 0 (fp32)."""

    def __init__(
        self, observation_space: gym.spaces.Dict, policy_config: ConfigLike = "policy/hrm-tiny"
    ) -> None:
        config = as_config(policy_config)
        for key in ("tokens", "features"):
            if key not in observation_space.spaces:
                raise ValueError(
                    f"HRMExtractor: observation space has no {key!r} entry (has {list(observation_space.spaces)})"
                )
        seq_len = observation_space["tokens"].shape[0]
        if seq_len != config.seq_len:
            raise ValueError(
                f"HRMExtractor: observation tokens have length {seq_len}, config.seq_len is {config.seq_len}"
            )
        super().__init__(observation_space, features_dim=config.hidden_size)
        self.config = config
        self.core = HRMCore(config, int(observation_space["features"].shape[0]))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 hands Box observations over as float; token ids < 2**24 survive the round trip exactly.
        tokens = observations["tokens"].long()
        dtype = resolve_dtype(self.config.forward_dtype, tokens.device)
        carry = self.core.initial_carry(tokens.shape[0], tokens.device, dtype)
        _, z_H = self.core(carry, tokens, observations["features"].float())
        return z_H[:, 0].float()


class HRMMaskablePolicy(MaskableMultiInputActorCriticPolicy):
    """MaskablePPO policy on the HRM extractor with linear action and value heads (net_arch=[]).

    SB3's orthogonal init only touches nn.Linear/nn.Conv2d, so the HRM's own init is left intact.
    """

    def __init__(self, *args: Any, policy_config: ConfigLike = "policy/hrm-tiny", **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", HRMExtractor)
        kwargs.setdefault("features_extractor_kwargs", {"policy_config": policy_config})
        kwargs.setdefault("net_arch", [])
        super().__init__(*args, **kwargs)
