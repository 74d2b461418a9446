"""The quickstart configs resolve into valid env and train configs; stage times are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm_spawn.envs.config import load_config
from hrm_spawn.envs.spawn_env import load_env_config
from hrm_spawn.trainers.quickstart import QuickstartConfig, StageTimer, build_configs, run_dir_for


@pytest.mark.parametrize("name", ["quickstart", "quickstart-tiny"])
def test_quickstart_configs_resolve(name: str, tmp_path: Path) -> None:
    config = load_config(QuickstartConfig, name)
    collect_env, train_cfg = build_configs(config, tmp_path / "tasks.jsonl", tmp_path / "store.sqlite")
    env = load_env_config(collect_env)  # every env key the config sets is a known, valid one
    assert env.mode == "cached" and env.tasks == str(tmp_path / "tasks.jsonl")
    assert train_cfg.env.mode == "replay" and train_cfg.env.split == "train"
    assert train_cfg.policy.seq_len == env.seq_len
    assert (
        train_cfg.env.budget.model_dump() == config.collect.budget.model_dump()
    )  # replay keys on the same budget


def test_tiny_quickstart_is_smaller_than_the_full_one() -> None:
    tiny, full = load_config(QuickstartConfig, "quickstart-tiny"), load_config(QuickstartConfig, "quickstart")
    assert tiny.tasks.max_bugs + tiny.tasks.combined < full.tasks.max_bugs + full.tasks.combined
    assert len(tiny.train["env"]["agents"]) <= len(full.train["env"]["agents"])
    assert tiny.train["act_q"]["iterations"] < full.train["act_q"]["iterations"]


def test_stage_timer_summary() -> None:
    timer = StageTimer()
    for stage in ("tasks", "collect", "train", "evaluate"):
        timer.done(stage)
    assert list(timer.seconds) == ["tasks", "collect", "train", "evaluate"]
    assert all(sec >= 0 for sec in timer.seconds.values())
    assert timer.summary().startswith("stages: tasks 0s, collect 0s, train 0s, evaluate 0s; total")


def test_run_dir_follows_the_config_and_the_feature_layout(tmp_path: Path, monkeypatch) -> None:
    """A finished run is reused only by the same config on the same observation layout: a checkpoint
    made for other features would not load."""
    config = load_config(QuickstartConfig, "quickstart-tiny")
    _, train_cfg = build_configs(config, tmp_path / "tasks.jsonl", tmp_path / "store.sqlite")
    first = run_dir_for(train_cfg, tmp_path)
    assert run_dir_for(train_cfg, tmp_path) == first and first.name.startswith("run-")
    assert run_dir_for(train_cfg.model_copy(update={"seed": 1}), tmp_path) != first
    monkeypatch.setattr("hrm_spawn.envs.features.layout", lambda: "an older layout")
    assert run_dir_for(train_cfg, tmp_path) != first


def test_quickstart_cross_fits_and_prints_intervals(replay_data, tmp_path, monkeypatch, capsys) -> None:
    """The quickstart's train+evaluate stage on a hand-filled store: K policies, one pooled report over
    every task, intervals and the verdict line (building tasks and collecting are not what is tested)."""
    from fixtures.tiny_policy import TINY_POLICY

    from hrm_spawn.trainers import quickstart

    monkeypatch.setattr(quickstart, "ensure_tasks", lambda cfg, workers: replay_data.tasks_path)
    monkeypatch.setattr(quickstart, "run_collect", lambda *args: None)
    env = {k: v for k, v in replay_data.env().items() if k not in ("tasks", "store", "mode")}
    config = QuickstartConfig.model_validate(
        {
            "store": str(replay_data.store_path),
            "train": {
                "env": env,
                "policy": TINY_POLICY,
                "act_q": {"iterations": 3, "num_envs": 8, "updates": 1, "batch_episodes": 8},
            },
            "eval": {"folds": 2, "resamples": 100},
        }
    )
    report = quickstart.run_quickstart(config, tmp_path / "qs")
    assert report["meta"]["num_tasks"] == replay_data.num_tasks and report["meta"]["pooled_from"] == 2
    out = capsys.readouterr().out
    assert "Cross-fitted over 16 tasks" in out and "hrm − policy" in out
    assert "Bootstrap intervals" in (tmp_path / "qs" / "report.md").read_text()
    assert list((tmp_path / "qs").glob("run-*/crossfit.json"))


def test_negative_folds_are_refused() -> None:
    with pytest.raises(ValueError, match="folds"):
        QuickstartConfig.model_validate({"eval": {"folds": -1}})
