"""ACT Q-learning end to end in replay mode: it learns, checkpoints resume exactly, eval writes reports."""

from __future__ import annotations

import json
import time

import pytest
import torch
from fixtures.tiny_policy import TINY_POLICY
from safetensors.torch import load_file

from hrm_spawn.envs.config import build_config
from hrm_spawn.trainers.act_q import train_act_q
from hrm_spawn.trainers.checkpoint import latest_checkpoint, load_state, load_train_config
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.evaluate import _run_in_process, cli_eval, evaluate
from hrm_spawn.trainers.report import comparison_table
from hrm_spawn.trainers.train import run_training

LAM = 0.02


def _config(data, iterations: int = 60, policy: dict | None = None, **act_q) -> TrainConfig:
    return build_config(
        TrainConfig,
        {
            "algo": "act_q",
            "seed": 0,
            "device": "cpu",
            "env": data.env(split="all"),
            "policy": {**TINY_POLICY, **(policy or {})},
            "act_q": {
                "iterations": iterations,
                "num_envs": 16,
                "updates": 2,
                "batch_episodes": 32,
                "epsilon_start": 0.5,
                "epsilon_end": 0.05,
                "epsilon_decay_iterations": iterations // 2,
                "target_update_every": 0,
                "lam": {"low": LAM, "high": LAM},
                "lr": 3e-3,
                **act_q,
            },
            "checkpoint_every": 10,
        },
    )


def test_act_q_learns_to_beat_random_and_halt(replay_data, tmp_path) -> None:
    # CPU seconds of this process: what the run costs, whatever else shares the machine's cores.
    start = time.process_time()
    ckpt = run_training(_config(replay_data, iterations=80), tmp_path / "run", progress=False)
    train_s = time.process_time() - start
    report = evaluate(ckpt, {}, split="all", lam=LAM, sweep=False)
    pol = report["policies"]
    print(comparison_table(report))
    assert pol["hrm"]["score"] > pol["random"]["score"] + 0.1, pol
    assert pol["hrm"]["score"] > pol["halt"]["score"] + 0.5, pol
    assert pol["oracle"]["score"] >= pol["hrm"]["score"] - 1e-9 or pol["oracle"]["resolve_rate"] == 1.0
    assert train_s < 60, f"training took {train_s:.1f} CPU seconds"
    assert (tmp_path / "run" / "tb").is_dir()


@pytest.mark.parametrize(
    "policy", [{}, {"q_ensemble": 3, "q_pessimism": 0.5}], ids=["one-q-head", "q-ensemble"]
)
def test_resume_after_kill_gives_identical_weights(replay_data, tmp_path, policy) -> None:
    config = _config(replay_data, iterations=6, policy=policy, target_update_every=2, double_q=True)
    config = config.model_copy(update={"checkpoint_every": 3})
    straight = train_act_q(config, tmp_path / "a", progress=False)
    train_act_q(config, tmp_path / "b", progress=False, stop_after=3)  # "killed" after its 3rd iteration
    first = latest_checkpoint(tmp_path / "b")
    assert first is not None and load_state(first)["trainer"]["iteration"] == 3
    resumed = train_act_q(config, tmp_path / "b", resume=True, progress=False)
    a, b = load_file(str(straight / "policy.safetensors")), load_file(str(resumed / "policy.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key
    meta = json.loads((resumed / "meta.json").read_text())
    assert meta["iteration"] == 6 and meta["seed"] == 0


def test_eval_cli_writes_report_with_every_baseline(replay_data, tmp_path) -> None:
    ckpt = run_training(_config(replay_data, iterations=4), tmp_path / "run", progress=False)
    out = tmp_path / "eval"
    assert cli_eval(replay_data.eval_args(tmp_path / "run", out)) == 0
    report = json.loads((out / "report.json").read_text())
    names = set(report["policies"])
    assert {"hrm", "halt", "spawn_all", "best_cascade", "random", "oracle"} <= names
    assert {"single:alpha", "single:beta", "single:gamma"} <= names
    assert report["meta"]["checkpoint"] == str(ckpt)
    for m in report["policies"].values():
        assert {"resolve_rate", "pass_rate", "mean_cost", "score", "by_kind"} <= set(m)
        assert m["score"] == pytest.approx(m["pass_rate"] - report["lambda"] * m["mean_cost"])
    assert report["policies"]["halt"]["mean_cost"] == 0.0
    assert report["policies"]["oracle"]["resolve_rate"] == 1.0
    assert set(report["lambda_sweep"]["hull_area"]) >= {"hrm", "best_cascade"}
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "report.md").is_file()


def test_training_and_live_eval_show_progress_as_plain_lines(replay_data, tmp_path, capsys) -> None:
    ckpt = run_training(_config(replay_data, iterations=3), tmp_path / "run", progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("act_q: 0/3 it (") and err[-1].startswith("act_q: 3/3 it (")
    assert "ret=" in err[-1] and "loss=" in err[-1] and "\r" not in "".join(err)  # not a terminal: lines
    evaluate(ckpt, {}, split="all", lam=LAM, sweep=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("eval (λ sweep): 0/") and err[-1].startswith("eval (λ sweep): ")
    # the in-process loop (a custom env's cached/live eval) counts tasks as the env runs them; replay
    # mode needs no agent code
    config = load_train_config(ckpt)
    _run_in_process(ckpt, config, "all", "replay", torch.device("cpu"), LAM, True)
    live = capsys.readouterr().err.splitlines()
    n = replay_data.num_tasks
    assert live[0].startswith(f"eval (replay): 0/{n} tasks") and live[-1].startswith(
        f"eval (replay): {n}/{n} tasks"
    )
    assert "resolved=" in live[-1] and "cost=" in live[-1]
