"""hrm-spawn eval on a table imported from another harness: the report counts and names its cost unit."""

from __future__ import annotations

import json

import pytest
from fixtures.benchmark_module import benchmark_module
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


# ---- benchmarks/real_table.py on a small table in its column names -----------------------------------


@pytest.fixture
def real_table(hrm_home):
    with benchmark_module("real_table.py") as module:
        yield module


def _runs_csv(path, models, repos=("acme__webkit", "numlab__solver"), per_repo=4):
    """SWE-Bench Pro's export columns; model k resolves the tasks of repository k % 2, with k+1 turns."""
    lines = [
        "agent_run_id,metadata.instance_id,metadata.model_name,metadata.resolved,metadata.turns,tag,created_at"
    ]
    n = 0
    for r, repo in enumerate(repos):
        for i in range(per_repo):
            task = f"instance_{repo}-{r:020x}{i:020x}"
            for k, model in enumerate(models):
                n += 1
                lines.append(
                    f'run{n},{task},{model},{str(k % 2 == r).lower()},{k + 1},,"Oct 13, 2025, 10:41 PM UTC"'
                )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_real_table_keeps_one_run_per_task_and_model_on_tasks_every_model_ran(real_table, tmp_path) -> None:
    models = list(real_table.AGENTS)
    lines = _runs_csv(tmp_path / "runs.csv", models)
    task0 = lines[1].split(",")[1]
    # a later second run of the first model on task0 (dropped: the earlier one is kept), and a task only
    # one model ran (dropped: the others have no outcome to replay)
    later = lines[1].replace("run1,", "run999,").replace(",true,", ",false,").replace("10:41 PM", "11:59 PM")
    lonely = f'run1000,instance_acme__webkit-{"f" * 40},{models[0]},true,3,,"Oct 13, 2025, 10:41 PM UTC"'
    (tmp_path / "runs.csv").write_text("\n".join([*lines, later, lonely]) + "\n", encoding="utf-8")
    counts = real_table.prepare_table(tmp_path / "runs.csv", tmp_path / "table.csv", models)
    assert counts == {
        "rows_of_models": 42,
        "duplicates_dropped": 1,
        "tasks_any_model": 9,
        "tasks_all_models": 8,
    }
    kept = (tmp_path / "table.csv").read_text().splitlines()
    assert len(kept) == 1 + 8 * len(models)
    assert any(line.startswith("run1,") and task0 in line for line in kept)
    assert not any(line.startswith(("run999,", "run1000,")) for line in kept)


def test_real_table_crossfits_and_counts_first_agents_per_repository(real_table, tmp_path) -> None:
    models = list(real_table.AGENTS)
    out = tmp_path / "bench"
    out.mkdir()
    _runs_csv(tmp_path / "runs.csv", models)
    real_table.prepare_table(tmp_path / "runs.csv", out / "table.csv", models)
    report = real_table.import_store(out)
    assert report.cost_unit == "usd" and report.cost_basis.startswith("steps x USD per step")
    base = real_table.train_config(out, 2)
    base["policy"] = {**TINY_POLICY, "seq_len": base["env"]["seq_len"]}
    base["act_q"].update(num_envs=4, updates=1, batch_episodes=4)
    result = real_table.run_variant(out, "verifier", 2, base)
    firsts = result["first_agents"]
    assert set(firsts) == {"0", "0.1", "0.2"}
    for lam in firsts.values():
        assert sum(lam["overall"].values()) == 8 and lam["distinct"] == len(lam["overall"])
        assert set(lam["per_repo"]) == {"acme/webkit", "numlab/solver"}
        assert all(sum(c.values()) == 4 for c in lam["per_repo"].values())
        assert [sum(f.values()) for f in lam["per_fold"]] == [4, 4]  # each fold holds out half the tasks
    assert [row["lam"] for row in result["sweep"]][1:] == result["sweep_lams"]
    assert all(row["best_other"] not in ("hrm", "oracle") for row in result["sweep"])
    limits = real_table.table_limits(out)
    assert limits["oracle_resolve"] == 1.0 and limits["unsolved_share"] == 0.0
    # one cascade per repository: its resolving agent first, the cheapest of them (turns k+1)
    assert 0 < limits["repo_cascades_95pct_oracle_cost_vs_spawn_all"] < 1
