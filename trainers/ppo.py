"""MaskablePPO (sb3-contrib) with the HRM features extractor (policies/sb3.py), for comparison with ACT Q.

Vector env: the env the config names; when it can replay and is in replay mode, ``ppo.num_envs`` rows of
the batched replay env as an SB3 ``VecEnv`` (envs/vector.py, the fast path), else that many envs in a
``DummyVecEnv`` (``ppo.vec_env: dummy`` forces this). Either is wrapped in ``VecMonitor``, so SB3 logs
``rollout/ep_rew_mean``. λ is sampled per episode from ``env.lam``. A callback logs episode return,
resolve-rate, pass-rate and cost to TensorBoard (SB3 logs losses and steps/s itself) and writes
checkpoints with trainers/checkpoint.py; ``ppo.callbacks`` adds SB3 callbacks by ``module:Name``. Each
checkpoint also holds ``sb3_model.zip`` (``MaskablePPO.load`` opens it). ``--resume`` continues from
the latest checkpoint's weights, optimizer and step counter (SB3 does not expose its rollout buffer, so
a resumed run starts a fresh rollout: equal in expectation, not bit for bit, unlike ACT Q).

SB3's logger is set explicitly to TensorBoard under ``RUN/tb/ppo``: left to itself SB3 makes a
``$TMPDIR/SB3-<date>`` folder whenever no TensorBoard folder is given. ``PPOActor`` runs a checkpoint
greedily for ``hrm-spawn eval``; λ reaches it as feature 0 of the observation, as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_spawn.envs.config import ConfigError
from hrm_spawn.trainers.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.rollout import env_factory, make_env, replay_of
from hrm_spawn.trainers.runtime import resolve_device, seed_everything, set_threads

SB3_ZIP = "sb3_model.zip"


def make_vec_env(config: TrainConfig) -> Any:
    """The training VecEnv (batched replay when the env can, else DummyVecEnv), in a VecMonitor."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    cfg = config.ppo
    if cfg.vec_env == "auto":
        first = make_env(config)
        in_replay = getattr(getattr(first.unwrapped, "config", None), "mode", None) == "replay"
        replay = replay_of(first) if in_replay else None
        first.close()
        if replay is not None:
            from hrm_spawn.envs.vector import ReplayVecEnv

            return VecMonitor(ReplayVecEnv.from_replay(replay, cfg.num_envs, seed=config.seed))
    venv = DummyVecEnv([env_factory(config) for _ in range(cfg.num_envs)])
    venv.seed(config.seed)
    return VecMonitor(venv)


def user_callbacks(names: list[str]) -> list[Any]:
    """SB3 callbacks named ``module:Name`` (a BaseCallback subclass, built without arguments, or an instance)."""
    from stable_baselines3.common.callbacks import BaseCallback

    from hrm_spawn.envs.plugins import load_object

    out = []
    for name in names:
        obj = load_object(name, "ppo.callbacks entry", ConfigError)
        if isinstance(obj, type) and issubclass(obj, BaseCallback):
            obj = obj()
        if not isinstance(obj, BaseCallback):
            raise ConfigError(f"ppo.callbacks: {name!r} is a {type(obj).__name__}, not an SB3 BaseCallback")
        out.append(obj)
    return out


def _callbacks(config: TrainConfig, run_dir: Path, progress: bool) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    class EpisodeStats(BaseCallback):
        """Per finished episode: return, resolved, pass-rate, cost -> TensorBoard; checkpoints."""

        def __init__(self) -> None:
            super().__init__()
            self.every = max(1, config.ppo.n_steps * config.ppo.num_envs)
            self.next_ckpt = self.every

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=False):
                if done:
                    self.logger.record_mean("episode/return", float(info.get("episode_return", 0.0)))
                    self.logger.record_mean("episode/resolve_rate", float(info.get("resolved", False)))
                    self.logger.record_mean("episode/pass_rate", float(info.get("pass_rate", 0.0)))
                    self.logger.record_mean("episode/cost", float(info.get("cost", 0.0)))
                    self.logger.record_mean("episode/steps", float(info.get("steps", 0)))
            if self.num_timesteps >= self.next_ckpt:
                self.next_ckpt += self.every
                save_ppo_checkpoint(self.model, config, run_dir)
            return True

    return CallbackList([EpisodeStats(), *user_callbacks(config.ppo.callbacks)])


def save_ppo_checkpoint(model: Any, config: TrainConfig, run_dir: Path) -> Path:
    weights = {"policy": model.policy.state_dict()}
    state = {
        "optimizer": model.policy.optimizer.state_dict(),
        "num_timesteps": model.num_timesteps,
        "rng": rng_state(),
    }
    path = save_checkpoint(
        run_dir,
        int(model.num_timesteps),
        config,
        weights,
        state,
        {"num_timesteps": model.num_timesteps, "format": "sb3-maskable-ppo"},
    )
    if config.ppo.save_sb3_zip:
        model.save(path / SB3_ZIP)  # SB3's own format, for MaskablePPO.load
    return path


def train_ppo(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    from sb3_contrib import MaskablePPO

    from hrm_spawn.policies.sb3 import HRMMaskablePolicy

    seed_everything(config.seed)
    set_threads(config)
    cfg = config.ppo
    venv = make_vec_env(config)
    model = MaskablePPO(
        HRMMaskablePolicy,
        venv,
        learning_rate=cfg.lr,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        ent_coef=cfg.ent_coef,
        policy_kwargs={"policy_config": config.policy.model_dump()},
        seed=config.seed,
        device=str(resolve_device(config.device)),
        verbose=0,
    )
    model.set_logger(_tb_logger(run_dir))
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = load_state(ckpt)
        model.policy.load_state_dict(load_weights(ckpt))
        model.policy.optimizer.load_state_dict(state["optimizer"])
        model.num_timesteps = int(state["num_timesteps"])
        set_rng_state(state["rng"])
    remaining = max(0, cfg.total_timesteps - model.num_timesteps)
    if remaining:
        model.learn(
            remaining,
            callback=_callbacks(config, run_dir, progress),
            progress_bar=progress,
            reset_num_timesteps=ckpt is None,
        )
    venv.close()
    return save_ppo_checkpoint(model, config, run_dir)


def _tb_logger(run_dir: Path) -> Any:
    """TensorBoard only, in the run's own folder (a resumed run appends to the same one)."""
    from stable_baselines3.common.logger import configure

    return configure(str(run_dir / "tb" / "ppo"), ["tensorboard"])


# ---------------------------------------------------------------------------------------------------
# Evaluation: the checkpoint's SB3 policy without MaskablePPO (no env, no rollout buffer).


def load_ppo_policy(
    ckpt: Path,
    observation_space: Any,
    num_actions: int,
    device: torch.device,
    config: TrainConfig | None = None,
) -> Any:
    """The ``HRMMaskablePolicy`` of a PPO checkpoint, for the env's observation space, in eval mode."""
    import gymnasium as gym

    from hrm_spawn.policies.sb3 import HRMMaskablePolicy
    from hrm_spawn.trainers.checkpoint import load_into, load_train_config

    config = config or load_train_config(ckpt)
    policy = HRMMaskablePolicy(
        observation_space,
        gym.spaces.Discrete(num_actions),
        lambda _: 0.0,  # no optimizer steps at evaluation
        policy_config=config.policy.model_dump(),
    )
    load_into(policy, ckpt, f"a PPO policy for {num_actions} actions and this observation space")
    return policy.to(device).eval()


class PPOActor:
    """Greedy (mode of the masked action distribution) over a batch of envs.

    The PPO policy keeps no carry between steps (policies/sb3.py), so ``reset_rows`` is not needed.
    """

    def __init__(self, policy: Any, device: torch.device):
        self.policy, self.device = policy, device

    @torch.no_grad()
    def __call__(self, obs: dict[str, np.ndarray], reset_rows: np.ndarray) -> np.ndarray:
        masks = np.asarray(obs["action_mask"]).astype(bool)
        batch = {
            "tokens": torch.as_tensor(obs["tokens"], dtype=torch.float32, device=self.device),
            "features": torch.as_tensor(obs["features"], dtype=torch.float32, device=self.device),
            "action_mask": torch.as_tensor(masks, dtype=torch.float32, device=self.device),
        }
        dist = self.policy.get_distribution(batch, action_masks=masks)
        return dist.mode().cpu().numpy().astype(np.int64)
