"""MaskablePPO (sb3-contrib) with the HRM features extractor (policies/sb3.py), for comparison with ACT Q.

Vector envs: ``ppo.num_envs`` SpawnEnvs in one process (``DummyVecEnv``; replay steps are cheap, and the
policy forward dominates). λ is sampled per episode by the env from ``ppo.lam``. Callbacks log episode
return, resolve-rate, pass-rate and cost to TensorBoard (SB3 logs losses and steps/s itself) and write
checkpoints with trainers/checkpoint.py. ``--resume`` continues from the latest checkpoint's weights,
optimizer and step counter (SB3 does not expose its rollout buffer, so a resumed run starts a fresh
rollout: equal in expectation, not bit for bit, unlike ACT Q).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from trainers.config import TrainConfig


def _callbacks(config: TrainConfig, run_dir: Path, progress: bool) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

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

    return EpisodeStats()


def save_ppo_checkpoint(model: Any, config: TrainConfig, run_dir: Path) -> Path:
    weights = {"policy": model.policy.state_dict()}
    state = {
        "optimizer": model.policy.optimizer.state_dict(),
        "num_timesteps": model.num_timesteps,
        "rng": rng_state(),
    }
    return save_checkpoint(
        run_dir,
        int(model.num_timesteps),
        config,
        weights,
        state,
        {"num_timesteps": model.num_timesteps, "format": "sb3-maskable-ppo"},
    )


def train_ppo(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from policies.sb3 import HRMMaskablePolicy
    from trainers.train import env_factory, resolve_device, seed_everything, set_threads

    seed_everything(config.seed)
    set_threads(config)
    cfg = config.ppo
    make = env_factory(config, lam=[cfg.lam.low, cfg.lam.high])
    venv = DummyVecEnv([make for _ in range(cfg.num_envs)])
    venv.seed(config.seed)
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
        tensorboard_log=str(run_dir / "tb"),
        seed=config.seed,
        device=str(resolve_device(config.device)),
        verbose=0,
    )
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
            progress_bar=False,
            reset_num_timesteps=ckpt is None,
            tb_log_name="ppo",
        )
    venv.close()
    return save_ppo_checkpoint(model, config, run_dir)
