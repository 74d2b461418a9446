"""MaskablePPO with the HRM extractor trains on the replay env, checkpoints, and evaluates like ACT Q."""

from __future__ import annotations

import json
import math

import pytest
from fixtures.tiny_policy import TINY_POLICY
from stable_baselines3.common.callbacks import BaseCallback

from hrm_spawn.envs.config import build_config
from hrm_spawn.trainers.checkpoint import load_state
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.evaluate import cli_eval
from hrm_spawn.trainers.train import run_training

POLICY_METRICS = {"n", "resolve_rate", "pass_rate", "mean_cost", "score", "mean_steps", "by_kind"}


class CountCalls(BaseCallback):
    """A user callback named in ppo.callbacks (loaded from this file by path)."""

    calls = 0

    def _on_step(self) -> bool:
        type(self).calls += 1
        return True


def _config(replay_data, split: str = "train", total: int = 64, **ppo) -> TrainConfig:
    return build_config(
        TrainConfig,
        {
            "algo": "ppo",
            "seed": 1,
            "device": "cpu",
            "env": replay_data.env(split=split),
            "policy": TINY_POLICY,
            "ppo": {
                "total_timesteps": total,
                "num_envs": 2,
                "n_steps": 16,
                "batch_size": 16,
                "n_epochs": 1,
                "lam": {"low": 0.0, "high": 0.04},
                **ppo,
            },
        },
    )


def test_ppo_runs_and_checkpoints(replay_data, tmp_path) -> None:
    ckpt = run_training(_config(replay_data), tmp_path / "run", progress=False)
    assert load_state(ckpt)["num_timesteps"] >= 64
    assert (ckpt / "policy.safetensors").stat().st_size > 0
    assert any((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    # SB3 logs into the run, never into a SB3-<date> folder of its own (conftest points SB3_LOGDIR here)
    assert not (tmp_path / "sb3").exists()


def test_ppo_checkpoint_evaluates_through_the_report(replay_data, tmp_path) -> None:
    ckpt = run_training(_config(replay_data), tmp_path / "run", progress=False)
    out = tmp_path / "eval"
    assert cli_eval(replay_data.eval_args(tmp_path / "run", out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["checkpoint"] == str(ckpt) and report["meta"]["algo"] == "ppo"
    assert report["lambda"] == pytest.approx(0.02)  # the middle of ppo.lam
    names = set(report["policies"])
    assert {"hrm", "halt", "spawn_all", "best_cascade", "random", "oracle"} <= names
    assert {"single:alpha", "single:beta", "single:gamma"} <= names
    hrm = report["policies"]["hrm"]
    assert set(hrm) >= POLICY_METRICS and hrm["n"] == report["meta"]["num_tasks"] > 0
    for key in ("resolve_rate", "pass_rate", "mean_cost", "score", "mean_steps"):
        assert math.isfinite(hrm[key]), (key, hrm)
    assert hrm["score"] == pytest.approx(hrm["pass_rate"] - report["lambda"] * hrm["mean_cost"])
    sweep = report["lambda_sweep"]
    assert [p["lam"] for p in sweep["points"]["hrm"]] == [p["lam"] for p in sweep["points"]["oracle"]]
    assert len(sweep["points"]["hrm"]) > 1 and math.isfinite(sweep["hull_area"]["hrm"])
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "report.md").is_file()


def test_ppo_as_sb3_users_expect(replay_data, tmp_path) -> None:
    """Callbacks from the config, VecMonitor's rollout/ep_rew_mean, and a zip MaskablePPO.load opens."""
    import sys

    import numpy as np
    from sb3_contrib import MaskablePPO
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hrm_spawn.trainers.ppo import SB3_ZIP

    here = f"{__file__}:CountCalls"
    config = _config(replay_data, total=96, callbacks=[here])
    assert config.lam.high == 0.04 and config.env.lam == (0.0, 0.04)  # ppo.lam is read into env.lam
    ckpt = run_training(config, tmp_path / "run", progress=False)
    assert sys.modules["hrm_spawn_user_test_ppo"].CountCalls.calls >= 96 // 2  # one call per vector step
    model = MaskablePPO.load(ckpt / SB3_ZIP, device="cpu")
    obs = model.observation_space.sample()
    mask = np.zeros(model.action_space.n, bool)
    mask[0] = True
    action, _ = model.predict(
        {k: v[None] for k, v in obs.items()}, action_masks=mask[None], deterministic=True
    )
    assert action.tolist() == [0]
    events = EventAccumulator(str(tmp_path / "run" / "tb" / "ppo"))
    events.Reload()
    assert "rollout/ep_rew_mean" in events.Tags()["scalars"]


def test_unknown_callback_is_named(replay_data, tmp_path) -> None:
    from hrm_spawn.envs.config import ConfigError

    with pytest.raises(ConfigError, match="ppo.callbacks"):
        run_training(_config(replay_data, callbacks=["json:dumps"]), tmp_path / "run", progress=False)
