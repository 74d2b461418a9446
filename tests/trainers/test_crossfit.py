"""Cross-fitting end to end on the hand-filled replay store: every task judged once, with intervals."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from fixtures.tiny_policy import TINY_POLICY

from hrm_spawn.envs.config import build_config
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.crossfit import cli_crossfit, crossfit, fold_config, intervals, summary_line


def _config(data, iterations: int = 4) -> TrainConfig:
    return build_config(
        TrainConfig,
        {
            "algo": "act_q",
            "seed": 0,
            "device": "cpu",
            "env": data.env(),
            "policy": TINY_POLICY,
            "act_q": {
                "iterations": iterations,
                "num_envs": 8,
                "updates": 1,
                "batch_episodes": 8,
                "epsilon_decay_iterations": 2,
                "lam": {"low": 0.0, "high": 0.04},
            },
            "checkpoint_every": 10,
        },
    )


def test_every_task_is_held_out_once_and_figures_get_intervals(replay_data, tmp_path):
    report = crossfit(_config(replay_data), 2, tmp_path / "cf", resamples=200)
    data = json.loads((tmp_path / "cf" / "crossfit.json").read_text())
    tasks = data["outcomes"]["tasks"]
    assert sorted(tasks) == sorted(set(tasks)) and len(tasks) == replay_data.num_tasks
    assert report["meta"]["num_tasks"] == replay_data.num_tasks and report["meta"]["pooled_from"] == 2
    iv = report["intervals"]
    lam = report["lambda"]
    for name, policy in report["policies"].items():
        mine = iv["policies"][name]
        # the per-task outcomes give back the pooled report's own figures
        assert mine["score"]["estimate"] == pytest.approx(policy["score"], abs=1e-9)
        assert mine["resolve_rate"]["estimate"] == pytest.approx(policy["resolve_rate"], abs=1e-9)
        assert mine["hull"]["estimate"] == pytest.approx(report["lambda_sweep"]["hull_area"][name], abs=1e-9)
        for figure in ("score", "resolve_rate", "mean_cost", "hull"):
            assert mine[figure]["low"] <= mine[figure]["estimate"] + 1e-9 <= mine[figure]["high"] + 2e-9
    for name, vs in iv["hrm_vs"].items():
        assert vs["score_verdict"] in ("beat", "tied with", "lost to")
        expected = iv["policies"]["hrm"]["score"]["estimate"] - iv["policies"][name]["score"]["estimate"]
        assert vs["score"]["estimate"] == pytest.approx(expected, abs=1e-9)
    assert "halt" in iv["hrm_vs"] and "hrm" not in iv["hrm_vs"]
    assert lam == pytest.approx(0.02)
    md = (tmp_path / "cf" / "report.md").read_text()
    assert "Bootstrap intervals" in md and "Cross-fitted over 16 tasks" in md
    assert (tmp_path / "cf" / "fold0").is_dir() and (tmp_path / "cf" / "fold1").is_dir()


def test_folds_trained_at_once_are_the_folds_trained_in_turn(replay_data, tmp_path):
    config = _config(replay_data)
    crossfit(config, 2, tmp_path / "seq", resamples=50)
    crossfit(config, 2, tmp_path / "par", resamples=50, workers=2)
    seq, par = (json.loads((tmp_path / d / "crossfit.json").read_text()) for d in ("seq", "par"))
    assert par["outcomes"] == seq["outcomes"] and par["intervals"] == seq["intervals"]


def test_a_finished_fold_is_reused(replay_data, tmp_path):
    config = _config(replay_data)
    crossfit(config, 2, tmp_path / "cf", resamples=50)
    first = sorted(p.name for p in (tmp_path / "cf" / "fold0").rglob("meta.json"))
    crossfit(config, 2, tmp_path / "cf", resamples=50)
    assert sorted(p.name for p in (tmp_path / "cf" / "fold0").rglob("meta.json")) == first


def test_summary_says_beat_tie_or_lose_in_words():
    outcomes = {
        "tasks": [f"t{i}" for i in range(20)],
        "kinds": [[]] * 20,
        "lams": [0.0],
        "policies": {
            "hrm": {"pass_rate": [[1.0] * 20], "cost": [[1.0] * 20], "resolved": [[1.0] * 20]},
            "halt": {"pass_rate": [[0.0] * 20], "cost": [[0.0] * 20], "resolved": [[0.0] * 20]},
            "same": {"pass_rate": [[1.0] * 20], "cost": [[1.0] * 20], "resolved": [[1.0] * 20]},
            "oracle": {"pass_rate": [[1.0] * 20], "cost": [[0.5] * 20], "resolved": [[1.0] * 20]},
        },
    }
    iv = intervals(outcomes, resamples=100)
    assert iv["hrm_vs"]["halt"]["score_verdict"] == "beat"
    assert iv["hrm_vs"]["same"]["score_verdict"] == "tied with"
    line = summary_line(iv)
    assert "beat halt" in line and "tied with same" in line and "lost to" not in line  # oracle left out
    assert "hull" not in iv["policies"]["hrm"]  # one λ: no sweep, no hull


def _two_policies(n: int, oracle_only: int) -> dict:
    """A baseline that resolves what the oracle does except on ``oracle_only`` of ``n`` tasks."""
    base = [0.0 if i < oracle_only else float(i % 2) for i in range(n)]
    best = [1.0 if i < oracle_only else b for i, b in enumerate(base)]
    zeros = [[0.0] * n]
    return {
        "tasks": [f"t{i}" for i in range(n)],
        "kinds": [[]] * n,
        "lams": [0.0],
        "policies": {
            "hrm": {"pass_rate": [base], "cost": zeros, "resolved": [base]},
            "single": {"pass_rate": [base], "cost": zeros, "resolved": [base]},
            "oracle": {"pass_rate": [best], "cost": zeros, "resolved": [best]},
        },
    }


def test_summary_says_which_baselines_no_policy_could_be_shown_to_beat():
    # 2 tasks of 24 where the oracle does better: a resample misses both about 1 time in 8, so even the
    # oracle ties, and the line says this task set cannot show any policy beating that baseline
    few = intervals(_two_policies(24, oracle_only=2), resamples=400)
    assert few["oracle_vs"]["single"]["score_verdict"] == "tied with" and "hrm" not in few["oracle_vs"]
    assert "Even the oracle" in summary_line(few) and "(score: single)" in summary_line(few)
    many = intervals(_two_policies(24, oracle_only=12), resamples=400)
    assert many["oracle_vs"]["single"]["score_verdict"] == "beat"
    assert "Even the oracle" not in summary_line(many)


def test_fold_config_sets_the_fold_and_keeps_the_rest(replay_data):
    config = _config(replay_data)
    folded = fold_config(config, 5, 3, seed=2)
    assert (folded.env.folds, folded.env.fold, folded.env.split_seed) == (5, 3, 2)
    assert folded.act_q == config.act_q and folded.policy == config.policy


def test_cli_rejects_one_fold(replay_data, tmp_path, capsys):
    path = tmp_path / "train.yaml"
    import yaml

    path.write_text(yaml.safe_dump(json.loads(_config(replay_data).model_dump_json())))
    args = argparse.Namespace(
        config=str(path),
        overrides=[],
        folds=1,
        out=str(tmp_path / "o"),
        lam=None,
        seed=None,
        resamples=10,
        workers=1,
    )
    assert cli_crossfit(args) == 2
    assert "folds >= 2" in capsys.readouterr().err
    assert np.isfinite(0.0)
