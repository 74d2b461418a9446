"""Typed trainer configs (presets in configs/trainers/).

A ``TrainConfig`` names the environment (a registered id plus its config), the policy (a preset plus
key overrides) and the algorithm's settings. Presets are resolved when the config is validated, so
the YAML written next to a checkpoint is complete and needs no preset files to be read back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hrm_spawn.envs.config import ConfigError, StrictModel, read_yaml, resolve_config_path
from hrm_spawn.policies.config import HRMConfig


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` over ``base`` (sections merge, values replace)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _with_preset(data: Any, section: str) -> Any:
    """``{preset: NAME, ...keys}`` -> the preset's keys with the given keys on top."""
    if not isinstance(data, dict) or "preset" not in data:
        return data
    data = dict(data)
    name = data.pop("preset")
    if name is None:
        return data
    try:
        preset = read_yaml(resolve_config_path(name))
    except ConfigError as exc:
        raise ValueError(f"{section}.preset: {exc}") from None
    return _merge(preset, data)


class LambdaRange(StrictModel):
    """λ (cost weight) per episode: uniform in [low, high]; low == high fixes it."""

    low: float = 0.0
    high: float = 0.1

    @model_validator(mode="after")
    def _ordered(self) -> LambdaRange:
        if self.low < 0 or self.high < self.low:
            raise ValueError(f"need 0 <= low <= high, got low={self.low} high={self.high}")
        return self


class ActQConfig(StrictModel):
    """ACT Q-learning (trainers/act_q.py)."""

    iterations: int = 200  # one iteration = one batch of complete episodes, then `updates` gradient steps
    num_envs: int = 16  # episodes collected side by side per iteration
    updates: int = 4  # gradient steps per iteration
    batch_episodes: int = 32  # episodes per gradient step (from the replay buffer)
    buffer_episodes: int = 2048  # replay buffer capacity in episodes (FIFO); 0 = on-policy only
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epsilon_start: float = 0.5  # probability of a uniformly random valid action
    epsilon_end: float = 0.05
    epsilon_decay_iterations: int = 100
    # Q lives on [0, 1] (sigmoid, BCE) as returns in [-value_floor, 1]: below 0 a costly useless step must
    # still rank under halting, so returns are mapped affinely rather than clipped at 0.
    value_floor: float = Field(0.25, gt=0)
    target_update_every: int = 10  # iterations between target-network copies; 0 = no target network
    # Double Q-learning: the online network picks the best next move, the target network values it
    # (needs a target network). Plain max-bootstrapping overrates moves on states seen rarely.
    double_q: bool = False
    lam: LambdaRange = LambdaRange()

    @field_validator("iterations", "num_envs", "updates", "batch_episodes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _double_needs_target(self) -> ActQConfig:
        if self.double_q and self.target_update_every == 0:
            raise ValueError("double_q needs a target network: set target_update_every >= 1")
        return self


class PPOConfig(StrictModel):
    """MaskablePPO from sb3-contrib (trainers/ppo.py)."""

    total_timesteps: int = 20_000
    num_envs: int = 4
    n_steps: int = 64
    batch_size: int = 64
    n_epochs: int = 4
    lr: float = 3e-4
    gamma: float = 1.0
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    lam: LambdaRange = LambdaRange()


class TrainConfig(StrictModel):
    algo: Literal["act_q", "ppo"] = "act_q"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for torch; 0 = torch's default. Small policies on a few shared cores run fastest with 1
    # (thread hand-offs cost more than they save, and much more when other processes compete).
    torch_threads: int = Field(1, ge=0)
    env_id: str = "HRMSpawn/SWESmith-v0"  # a registered id or module:Class
    # Keyword config of the env (envs.spawn_env.EnvConfig for the built-in one); `preset: env/NAME` allowed.
    env: dict[str, Any] = {}
    policy: HRMConfig = HRMConfig()
    act_q: ActQConfig = ActQConfig()
    ppo: PPOConfig = PPOConfig()
    checkpoint_every: int = 20  # iterations (act_q) between checkpoints; the last one is always written
    log_every: int = 1

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_preset(cls, value: Any) -> Any:
        return _with_preset(value, "policy")

    @field_validator("env", mode="before")
    @classmethod
    def _env_preset(cls, value: Any) -> Any:
        return _with_preset(value, "env")

    @property
    def lam(self) -> LambdaRange:
        return self.act_q.lam if self.algo == "act_q" else self.ppo.lam
