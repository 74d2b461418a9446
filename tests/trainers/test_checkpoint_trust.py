"""What loading a checkpoint trusts: a ``state.pt`` that would run code on unpickling is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_act_q_e2e import _config  # the replay_data run of the e2e tests

from hrm_spawn.trainers.checkpoint import CheckpointError, load_state
from hrm_spawn.trainers.train import run_training


class _RunsCode:
    """Unpickling this calls ``os.system``: what a tampered ``state.pt`` could do under full pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_real_state_loads_and_a_tampered_one_is_refused_without_running(replay_data, tmp_path) -> None:
    ckpt = run_training(_config(replay_data, iterations=2), tmp_path / "run", progress=False)
    state = load_state(ckpt)  # what the trainer wrote: optimizer, buffer of numpy arrays, RNG states
    assert state["trainer"]["iteration"] == 2 and state["trainer"]["buffer"]
    assert state["rng"]["numpy"][0] == "MT19937"
    marker = tmp_path / "ran"
    state["trainer"]["optimizer"] = _RunsCode(marker)
    torch.save(state, ckpt / "state.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_state(ckpt)
    assert not marker.exists()
    # the CLI's --resume goes through load_state: it stops there too
    from hrm_spawn.trainers.act_q import train_act_q
    from hrm_spawn.trainers.checkpoint import load_train_config

    with pytest.raises(CheckpointError, match="refused"):
        train_act_q(load_train_config(ckpt), tmp_path / "run", resume=True, progress=False)
    assert not marker.exists()
