"""MaskablePPO with the HRM extractor trains on the replay env and writes a checkpoint."""

from __future__ import annotations

from fixtures.tiny_policy import TINY_POLICY

from envs.config import build_config
from trainers.checkpoint import load_state
from trainers.config import TrainConfig
from trainers.train import run_training


def test_ppo_runs_and_checkpoints(replay_data, tmp_path) -> None:
    config = build_config(
        TrainConfig,
        {
            "algo": "ppo",
            "seed": 1,
            "device": "cpu",
            "env": replay_data.env(split="train"),
            "policy": TINY_POLICY,
            "ppo": {"total_timesteps": 64, "num_envs": 2, "n_steps": 16, "batch_size": 16, "n_epochs": 1},
        },
    )
    ckpt = run_training(config, tmp_path / "run", progress=False)
    assert load_state(ckpt)["num_timesteps"] >= 64
    assert (ckpt / "policy.safetensors").stat().st_size > 0
    assert any((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
