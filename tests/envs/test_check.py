"""hrm-spawn env check: PASS on good envs (the custom-env example included), FAIL with a reason on bad ones."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from hrm_spawn.envs.check import cli_env_check, run_checks
from hrm_spawn.envs.registry import EnvNotFoundError, resolve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "tests/envs/custom_env_example.py:ToyTasksEnv"


class NoMaskEnv(gym.Env):
    """Right spaces, but no action_masks() and masked actions are accepted."""

    def __init__(self):
        self.action_space = gym.spaces.Discrete(3)
        self.observation_space = gym.spaces.Dict(
            {
                "tokens": gym.spaces.Box(0, 259, (8,), np.int64),
                "features": gym.spaces.Box(-1, 1, (2,), np.float32),
                "action_mask": gym.spaces.MultiBinary(3),
            }
        )

    def _obs(self):
        return {
            "tokens": np.zeros(8, np.int64),
            "features": np.zeros(2, np.float32),
            "action_mask": np.ones(3, np.int8),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        return self._obs(), 0.0, True, False, {}


def test_custom_env_example_passes_every_check(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = cli_env_check(argparse.Namespace(target=EXAMPLE, config=None, overrides=[], steps=100))
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("PASS") == 5 and "FAIL" not in out


def test_a_broken_env_fails_with_reasons():
    results = {r.name: r for r in run_checks(NoMaskEnv, steps=20)}
    assert results["construct"].ok and results["gymnasium check_env"].ok
    assert not results["spawn contract"].ok and "action_masks" in results["spawn contract"].detail


def test_unknown_target_is_a_clear_error():
    with pytest.raises(EnvNotFoundError, match="unknown env 'nope'.*HRMSpawn/SWESmith-v0"):
        resolve("nope")
    with pytest.raises(EnvNotFoundError, match="cannot import"):
        resolve("no_such_module_xyz:Env")


def test_command_line_fails_with_non_zero_exit(tmp_path):
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "hrm_spawn.envs.check",
            "HRMSpawn/SWESmith-v0",
            "tasks=" + str(tmp_path / "none.jsonl"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "FAIL  construct" in bad.stdout
