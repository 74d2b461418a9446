"""Typed trainer configs (presets in configs/trainers/).

A ``TrainConfig`` names the environment (``env_id``: a registered id, an entry point or ``module:Class``,
its settings ``env``, an ``EnvConfig``, and ``env_args``, further keyword arguments a custom env's
constructor takes), the policy (a preset plus key overrides) and the algorithm's settings. Presets are
resolved when the config is validated, so the YAML written next to a checkpoint needs no preset files.

λ has one home: ``env.lam`` (a number, or ``[low, high]`` sampled per episode). Both trainers train on
that range and eval sweeps it. Older configs put it under ``act_q.lam``/``ppo.lam``: that spelling is
still read (the chosen algorithm's range moves to ``env.lam``, as it used to override it).

``env`` is written back with the settings that were given only, so a custom env's own defaults stay
its own when the config is read back from a checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from hrm_spawn.envs.config import ConfigError, StrictModel, read_yaml, resolve_config_path
from hrm_spawn.envs.env_config import EnvConfig
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


class BackendConfig(StrictModel):
    """Where live/cached training runs its agents: collect's executor (``hrm-spawn collect --backend``)."""

    kind: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=1)  # None: one per training env (act_q.num_envs)
    address: str | None = None  # a running Ray cluster (HEAD:6379); None starts a local Ray


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
    # auto: the batched replay VecEnv when the env can replay (fast), else DummyVecEnv; dummy: always that.
    vec_env: Literal["auto", "dummy"] = "auto"
    # SB3 callbacks by ``module:Name`` (a BaseCallback class, built without arguments, or an instance).
    callbacks: list[str] = []
    # A copy of the model as ``MaskablePPO.save`` writes it (RUN/sb3_model.zip), beside the checkpoints.
    save_sb3_zip: bool = True


class TrainConfig(StrictModel):
    algo: Literal["act_q", "ppo"] = "act_q"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for torch; 0 = torch's default. Small policies on a few shared cores run fastest with 1
    # (thread hand-offs cost more than they save, and much more when other processes compete).
    torch_threads: int = Field(1, ge=0)
    env_id: str = "HRMSpawn/SWESmith-v0"  # a registered id, an entry point or module:Class
    # The env's settings (its constructor's keyword arguments); `preset: env/NAME` allowed.
    env: EnvConfig = EnvConfig()
    # Further keyword arguments of a custom env's constructor (e.g. num_tasks), passed as given.
    env_args: dict[str, Any] = {}
    policy: HRMConfig = HRMConfig()
    act_q: ActQConfig = ActQConfig()
    ppo: PPOConfig = PPOConfig()
    backend: BackendConfig = BackendConfig()  # live/cached SpawnEnv training only; replay needs none
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

    @model_validator(mode="before")
    @classmethod
    def _one_lambda(cls, data: Any) -> Any:
        """Older configs' ``act_q.lam``/``ppo.lam`` -> ``env.lam`` (the chosen algorithm's range wins)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        chosen = None
        for algo in ("act_q", "ppo"):
            section = data.get(algo)
            if isinstance(section, dict) and "lam" in section:
                section = dict(section)
                try:
                    lam = LambdaRange.model_validate(section.pop("lam"))
                except Exception as exc:
                    raise ValueError(f"{algo}.lam (now env.lam): {exc}") from None
                data[algo] = section
                if algo == data.get("algo", "act_q"):
                    chosen = lam
        if chosen is not None:
            env = _with_preset(data.get("env", {}), "env")
            if isinstance(env, dict):
                data["env"] = {**env, "lam": [chosen.low, chosen.high]}
        return data

    @field_serializer("env")
    def _given_env_settings(self, env: EnvConfig) -> dict[str, Any]:
        return env.model_dump(mode="json", exclude_unset=True)

    @property
    def lam(self) -> LambdaRange:
        """The training λ range (``env.lam``)."""
        lam = self.env.lam
        low, high = (lam, lam) if isinstance(lam, float) else lam
        return LambdaRange(low=low, high=high)

    def env_settings(self) -> dict[str, Any]:
        """The env constructor's keyword arguments: the given ``env`` settings and ``env_args``."""
        return {**self.env.model_dump(exclude_unset=True), **self.env_args}
