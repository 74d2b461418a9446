"""Trainer configs (presets, overrides, clear errors) and checkpoint files (atomic, aliases, latest)."""

from __future__ import annotations

import pytest
import torch

from hrm_spawn.envs.config import ConfigError, load_config
from hrm_spawn.trainers.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_state,
    load_train_config,
    load_weights,
    resolve_checkpoint,
    save_checkpoint,
)
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.quickstart import QuickstartConfig


def test_presets_load_and_resolve_policy_preset() -> None:
    cfg = load_config(TrainConfig, "trainers/act_q", ["policy.hidden_size=32", "act_q.iterations=3"])
    assert cfg.policy.hidden_size == 32 and cfg.policy.H_layers == 1  # the rest from policy/hrm-tiny
    assert cfg.act_q.iterations == 3 and cfg.env.mode == "replay"
    assert load_config(TrainConfig, "trainers/ppo").algo == "ppo"
    assert (
        load_config(QuickstartConfig, "quickstart-tiny").tasks.max_bugs
        <= load_config(QuickstartConfig, "quickstart").tasks.max_bugs
    )


@pytest.mark.parametrize(
    "override, needle",
    [
        ("act_q.iterationz=3", "act_q.iterationz"),
        ("act_q.iterations=0", "act_q.iterations"),
        ("act_q.lam.low=0.5", "act_q.lam"),
        ("policy.preset=policy/nope", "policy"),
        ("policy.q_ensemble=0", "q_ensemble"),
        ("act_q.double_q=true act_q.target_update_every=0", "double_q needs a target network"),
    ],
)
def test_bad_keys_are_named(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(TrainConfig, "trainers/act_q", override.split())


def test_checkpoint_round_trip_and_latest(tmp_path) -> None:
    cfg = load_config(TrainConfig, "trainers/act_q", ["seed=7"])
    shared = torch.arange(6.0)
    weights = {"policy": {"a": shared, "b": shared, "c": torch.ones(2, 2)}}
    first = save_checkpoint(tmp_path, 1, cfg, weights, {"x": 1})
    (tmp_path / "checkpoints" / ".step_000002.partial").mkdir()  # what a kill mid-write leaves
    second = save_checkpoint(tmp_path, 2, cfg, weights, {"x": 2})
    assert latest_checkpoint(tmp_path) == second and first.is_dir()
    assert resolve_checkpoint(tmp_path) == second
    loaded = load_weights(second)
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["b"], shared)  # alias restored
    assert load_state(second) == {"x": 2}
    assert load_train_config(second).seed == 7
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        resolve_checkpoint(tmp_path / "nothing")


def test_eval_env_overrides_as_train_takes_them() -> None:
    from hrm_spawn.trainers.evaluate import with_env_overrides

    cfg = load_config(TrainConfig, "trainers/act_q")
    folded = with_env_overrides(cfg, ["folds=5", "env.fold=2"])
    assert (folded.env.folds, folded.env.fold, folded.env.mode) == (5, 2, "replay")
    assert with_env_overrides(cfg, {"tasks": "t.jsonl", "store": None}).env.tasks == "t.jsonl"
    with pytest.raises(ConfigError, match="env.foldz"):
        with_env_overrides(cfg, ["foldz=5"])


def test_one_lambda_and_old_spellings() -> None:
    cfg = load_config(TrainConfig, "trainers/act_q", ["env.lam=[0.0, 0.08]"])
    assert (cfg.lam.low, cfg.lam.high) == (0.0, 0.08)
    old = load_config(TrainConfig, "trainers/act_q", ["act_q.lam.high=0.02"])  # a run's config before
    assert old.env.lam == (0.0, 0.02) and "lam" not in old.model_dump()["act_q"]
