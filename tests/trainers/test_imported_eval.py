"""hrm-spawn eval on a table imported from another harness: the report counts and names its cost unit."""

from __future__ import annotations

import json

import pytest
from fixtures.imported_table import import_fixture_table
from fixtures.tiny_policy import TINY_POLICY

from hrm_spawn.envs.config import build_config
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.evaluate import evaluate
from hrm_spawn.trainers.pareto_plot import pareto_figure
from hrm_spawn.trainers.report import write_report
from hrm_spawn.trainers.train import run_training


@pytest.fixture
def imported(tmp_path, hrm_home):
    return import_fixture_table(tmp_path)


def _checkpoint(imported, run_dir, **env):
    config = build_config(
        TrainConfig,
        {
            "algo": "act_q",
            "seed": 0,
            "device": "cpu",
            "env": imported.env(lam=[0.0, 0.5], **env),
            "policy": TINY_POLICY,
            "act_q": {"iterations": 2, "num_envs": 4, "updates": 1, "batch_episodes": 4},
            "checkpoint_every": 2,
        },
    )
    return run_training(config, run_dir, progress=False)


def test_eval_report_is_in_usd(imported, tmp_path) -> None:
    ckpt = _checkpoint(imported, tmp_path / "run")
    report = evaluate(ckpt, {}, split="all", lam=0.2, sweep=True)
    meta = report["meta"]
    assert (meta["cost_unit"], meta["cost_unit_label"], meta["lambda_unit"]) == ("usd", "USD", "per USD")
    assert meta["max_cost"] == 5.0
    rows = imported.rows().values()
    every = sum(r["cost_usd"] for r in rows) / 6  # spawn_all runs all three agents on each of 6 tasks
    pol = report["policies"]
    assert pol["spawn_all"]["mean_cost"] == pytest.approx(every) and every > 0
    assert all(pol[f"single:{a}"]["mean_cost"] > 0 for a in ("cheap", "mid", "strong"))
    assert pol["halt"]["mean_cost"] == 0.0
    paths = write_report(report, tmp_path / "eval")
    md = paths["md"].read_text()
    assert "mean_cost (USD)" in md and "cost in USD, λ per USD; an episode stops at max_cost = 5" in md
    assert "λ = 0.2 per USD" in md and "test runs" not in md
    assert json.loads(paths["json"].read_text())["meta"]["cost_unit"] == "usd"
    figure = pareto_figure(report)
    assert figure.axes[0].get_xlabel() == "mean cost per task (USD)"
    assert "points at λ = 0.2 per USD" in figure.axes[0].get_title()


def test_the_report_states_what_the_policy_observed(imported, tmp_path) -> None:
    ckpt = _checkpoint(imported, tmp_path / "run", observe="none")
    reports = {
        observe: evaluate(ckpt, [f"observe={observe}"], split="all", lam=0.0, sweep=False)
        for observe in ("none", "verifier")
    }
    for observe, report in reports.items():
        assert report["meta"]["observe"] == observe
        md = write_report(report, tmp_path / observe)["md"].read_text()
        assert f"Observed after each run (env.observe = {observe}): " in md
    blind, verified = (reports[o]["policies"] for o in ("none", "verifier"))
    # Without a signal spawn_all submits its first run (cheap's); with the verifier, any resolving run.
    assert blind["spawn_all"]["resolve_rate"] == blind["single:cheap"]["resolve_rate"]
    assert verified["spawn_all"]["resolve_rate"] == verified["oracle"]["resolve_rate"] > 0
    assert verified["spawn_all"]["resolve_rate"] > blind["spawn_all"]["resolve_rate"]
    # The verifier's stop rule: best_cascade at λ = 0 resolves what the oracle resolves, at no more cost
    assert verified["best_cascade"]["resolve_rate"] == verified["oracle"]["resolve_rate"]
    assert verified["best_cascade"]["mean_cost"] <= verified["spawn_all"]["mean_cost"]
