"""`hrm-spawn train` through the real command line: overrides, run dir, resume errors."""

from __future__ import annotations

import json

from hrm_spawn.trainers.cli import main


def test_train_cli_runs_and_resume_needs_a_run(replay_data, tmp_path, capsys) -> None:
    env = replay_data.env(split="train")
    overrides = [f"env.{k}={json.dumps(v)}" for k, v in env.items()] + [
        "policy.seq_len=64",
        "policy.hidden_size=32",
        "policy.H_cycles=1",
        "policy.L_cycles=1",
        "act_q.iterations=2",
        "act_q.num_envs=4",
        "act_q.updates=1",
        "device=cpu",
    ]
    out = tmp_path / "run"
    assert main(["train", "trainers/act_q", *overrides, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["checkpoint"].endswith("step_000002")
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_000002"
    # resuming a finished run does nothing more and keeps the checkpoint
    assert main(["train", "trainers/act_q", "--resume", "--out", str(out)]) == 0
    assert main(["train", "trainers/act_q", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "has no checkpoint" in capsys.readouterr().err
    assert main(["train", "trainers/act_q", "act_q.nope=1"]) == 2
    assert "act_q.nope" in capsys.readouterr().err
