"""The batched replay env as the vector envs users bring: a gymnasium ``VectorEnv`` and an SB3 ``VecEnv``.

Both step a ``BatchedReplayEnv`` (numpy over all rows at once, the rules of envs/episode.py) and reset a
finished row in the same step, handing its last observation on the way each library expects:

* ``ReplayVectorEnv`` (gymnasium 1.x, ``autoreset_mode`` SAME_STEP): ``infos["final_obs"]`` and
  ``infos["final_info"]`` (with ``_final_obs``/``_final_info`` row masks). ``gymnasium.make_vec`` on the
  registered id builds it through ``make_vector_env`` when the env is in replay mode, and a
  ``SyncVectorEnv`` of SpawnEnvs otherwise.
* ``ReplayVecEnv`` (stable-baselines3): ``infos[i]["terminal_observation"]`` and
  ``"TimeLimit.truncated"``, and ``env_method("action_masks")`` for sb3-contrib's MaskablePPO.

The per-episode figures SpawnEnv puts in its final ``info`` (``episode_return``, ``pass_rate``,
``resolved``, ``cost``, ``steps``, ``instance_id``) come with every finished row in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from hrm_spawn.envs import episode as E
from hrm_spawn.envs.replay import BatchedReplayEnv, Replay


def _row_obs(obs: dict[str, np.ndarray], row: int) -> dict[str, np.ndarray]:
    return {key: value[row] for key, value in obs.items()}


def _final_info(env: BatchedReplayEnv, final: dict[str, np.ndarray], row: int) -> dict[str, Any]:
    return {
        "episode_return": float(final["ret"][row]),
        "pass_rate": float(final["pass_rate"][row]),
        "resolved": bool(final["resolved"][row]),
        "cost": float(final["cost"][row]),
        "steps": int(final["steps"][row]),
        "instance_id": env.task_ids[int(final["task"][row])],
    }


def _spaces(env: BatchedReplayEnv) -> tuple[spaces.Dict, spaces.Discrete]:
    return E.observation_space(env.layout, env.spec.seq_len), spaces.Discrete(env.num_actions)


class ReplayVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a ``BatchedReplayEnv`` (one row per env)."""

    def __init__(self, batched: BatchedReplayEnv):
        if not batched.with_tokens:
            raise ValueError("ReplayVecEnv: the batched env must write tokens (with_tokens=True)")
        self.batched = batched
        self.render_mode = None
        self._actions = np.zeros(batched.num_envs, np.int64)
        observation_space, action_space = _spaces(batched)
        super().__init__(batched.num_envs, observation_space, action_space)

    @classmethod
    def from_replay(cls, replay: Replay, num_envs: int, seed: int | None = None) -> ReplayVecEnv:
        return cls(BatchedReplayEnv.from_replay(replay, num_envs, seed))

    def reset(self) -> dict[str, np.ndarray]:
        seed = self._seeds[0]
        obs = self.batched.reset(seed=seed)
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, np.int64).reshape(self.num_envs)

    def step_wait(self):
        obs, reward, terminated, truncated, final = self.batched.step(self._actions, final_obs=True)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for row in np.flatnonzero(final["done"]):
            infos[row] = {
                **_final_info(self.batched, final, row),
                "terminal_observation": _row_obs(final["obs"], row),
                "TimeLimit.truncated": bool(truncated[row] and not terminated[row]),
            }
        return obs, reward.astype(np.float32), final["done"].copy(), infos

    def action_masks(self) -> np.ndarray:
        return self.batched.action_masks()

    def _rows(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        if method_name != "action_masks":
            raise AttributeError(f"ReplayVecEnv: its rows have no method {method_name!r} (only action_masks)")
        masks = self.batched.action_masks()
        return [masks[row] for row in self._rows(indices)]

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "action_masks":
            return [lambda row=row: self.batched.action_masks()[row] for row in self._rows(indices)]
        if attr_name == "render_mode":
            return [None for _ in self._rows(indices)]
        if hasattr(self.batched, attr_name):
            return [getattr(self.batched, attr_name) for _ in self._rows(indices)]
        raise AttributeError(f"ReplayVecEnv: no attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"ReplayVecEnv: attributes of the batched rows are read-only ({attr_name!r})")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._rows(indices)]

    def close(self) -> None:
        pass


class ReplayVectorEnv(gym.vector.VectorEnv):
    """A gymnasium ``VectorEnv`` over a ``BatchedReplayEnv``; built like SpawnEnv (mode must be replay)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 16, *, seed: int | None = None, **spawn_env_args: Any):
        from hrm_spawn.envs.spawn_env import SpawnEnv

        env = SpawnEnv(**spawn_env_args)
        try:
            if env.config.mode != "replay":
                raise ValueError(
                    f"ReplayVectorEnv: mode is {env.config.mode!r}; the batched env replays the store "
                    "(mode='replay'); vectorise other modes with gymnasium.vector.SyncVectorEnv"
                )
            replay = env.replay()
        finally:
            env.close()
        self.batched = BatchedReplayEnv.from_replay(replay, num_envs, seed)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.batched)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.batched.reset(seed=seed), {}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, final = self.batched.step(np.asarray(actions), final_obs=True)
        infos: dict[str, Any] = {}
        done = final["done"]
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            final_info = np.full(self.num_envs, None, dtype=object)
            for row in np.flatnonzero(done):
                final_obs[row] = _row_obs(final["obs"], row)
                final_info[row] = _final_info(self.batched, final, row)
            infos = {"final_obs": final_obs, "_final_obs": done.copy(), "final_info": final_info}
            infos["_final_info"] = done.copy()
        return obs, reward, terminated.copy(), truncated.copy(), infos

    def action_masks(self) -> np.ndarray:
        return self.batched.action_masks()


def make_vector_env(num_envs: int = 1, **spawn_env_args: Any) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec``'s entry point for the built-in id: batched in replay mode, else sync."""
    if spawn_env_args.get("mode", _config_mode(spawn_env_args)) == "replay":
        return ReplayVectorEnv(num_envs, **spawn_env_args)
    from hrm_spawn.envs.spawn_env import SpawnEnv

    return gym.vector.SyncVectorEnv([lambda: SpawnEnv(**spawn_env_args) for _ in range(num_envs)])


def _config_mode(args: dict[str, Any]) -> str:
    from hrm_spawn.envs.env_config import load_env_config

    return load_env_config(args.get("config"), args.get("overrides")).mode
