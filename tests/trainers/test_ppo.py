"""MaskablePPO with the HRM extractor trains on the replay env, checkpoints, and evaluates like ACT Q."""

from __future__ import annotations

import json
import math

import pytest
from fixtures.tiny_policy import TINY_POLICY

from hrm_spawn.envs.config import build_config
from hrm_spawn.trainers.checkpoint import load_state
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.evaluate import cli_eval
from hrm_spawn.trainers.train import run_training

POLICY_METRICS = {"n", "resolve_rate", "pass_rate", "mean_cost", "score", "mean_steps", "by_kind"}


def _config(replay_data, split: str = "train", total: int = 64) -> TrainConfig:
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
