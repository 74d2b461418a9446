"""benchmarks/real_table.py's held-out rules (benchmarks/_rules.py) on tiny tables made here."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fixtures.benchmark_module import benchmark_module

REPOS = ("acme__alpha", "acme__beta", "octo__gamma", "octo__delta")


@pytest.fixture
def real_table():
    with benchmark_module("real_table.py") as module:
        yield module


def _task_id(repo: str, i: int) -> str:
    sha = hashlib.sha1(f"{repo}{i}".encode()).hexdigest()
    return f"instance_{repo}-{sha}-v{sha[:8]}"  # a SWE-Bench Pro id: the repository is in it


def _write_table(path: Path, models: list[str], tasks_per_repo: int = 9) -> None:
    """Repository k is resolved by model k alone (the last model resolves nothing); 30 turns a run."""
    fields = ["agent_run_id", "metadata.instance_id", "metadata.model_name", "metadata.resolved"]
    fields += ["metadata.turns", "tag", "created_at"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for k, repo in enumerate(REPOS):
            for i in range(tasks_per_repo):
                for j, model in enumerate(models):
                    writer.writerow(
                        {
                            "agent_run_id": f"{repo}-{i}-{j}",
                            "metadata.instance_id": _task_id(repo, i),
                            "metadata.model_name": model,
                            "metadata.resolved": "true" if j == k else "false",
                            "metadata.turns": 30,
                            "tag": "",
                            "created_at": "Oct 13, 2025, 10:41 PM UTC",
                        }
                    )


@pytest.fixture
def prepared(real_table, tmp_path: Path) -> Path:
    _write_table(tmp_path / "raw.csv", list(real_table.AGENTS))
    real_table.prepare_table(tmp_path / "raw.csv", tmp_path / "table.csv", list(real_table.AGENTS))
    return tmp_path


def test_repository_rules_beat_one_cascade_when_the_repository_names_the_agent(real_table, prepared) -> None:
    rules = real_table.heldout_rules(prepared, folds=3)
    classes = rules["classes"]
    repo, glob = classes["repo_cascade"], classes["global_cascade"]
    # λ 0: both resolve everything (the oracle); above it, one run a task beats any shared order
    assert repo["score"][0] == pytest.approx(1.0) and glob["score"][0] == pytest.approx(1.0)
    for lam, r, g, d in zip(
        rules["lams"][1:], repo["score"][1:], glob["score"][1:], repo["minus_vs"][1:], strict=True
    ):
        assert r > g + 0.01, lam
        assert d["low"] > 0 and d["estimate"] == pytest.approx(r - g)
    runs = real_table.load_runs(prepared / "table.csv")
    one_run = float((runs.usd * runs.resolved).sum() / runs.usd.sum())  # only the resolving agent's run
    assert repo["frontier"]["cost_at_target"] == pytest.approx(one_run)
    assert glob["frontier"]["cost_at_target"] > one_run + 0.05
    for c in classes.values():
        f = c["frontier"]
        assert all(0.0 <= x <= 1.0 for x in f["resolve_vs_oracle"] + f["cost_vs_spawn_all"])
    # without a signal one agent per repository resolves all; one agent for all resolves a quarter
    assert classes["repo_single"]["score"][0] == pytest.approx(1.0)
    assert classes["global_single"]["score"][0] == pytest.approx(0.25)


def test_folds_are_those_of_the_imported_store(real_table, prepared) -> None:
    from hrm_spawn.envs.split import select_split
    from hrm_spawn.envs.tasks import load_tasks

    real_table.import_store(prepared)
    tasks = load_tasks(prepared / "store.sqlite.tasks.jsonl").tasks
    runs = real_table.load_runs(prepared / "table.csv")
    fold = dict(zip(runs.tasks, real_table.table_folds(runs.tasks, 3, 0), strict=True))
    for k in range(3):
        held = {t.instance_id for t in select_split(tasks, "heldout", folds=3, fold=k)}
        assert held == {t for t, f in fold.items() if f == k}


def test_a_turn_halt_skips_the_second_agent_after_a_long_failed_run(real_table) -> None:
    from _rules import NEVER, Runs, heldout_outcomes, rule_outcomes

    # agent 0 fails every task; in 30 turns where agent 1 then resolves, in 90 where nothing does
    n = 30
    solvable = np.arange(n) % 2 == 0
    runs = Runs(
        tasks=[f"t{i}" for i in range(n)],
        repos=["r"] * n,
        resolved=np.stack([np.zeros(n, dtype=bool), solvable], 1),
        usd=np.ones((n, 2)),
        turns=np.stack([np.where(solvable, 30, 90), np.full(n, 30)], 1),
    )
    rules = [((0, 1), NEVER), ((0, 1), 45.0), ((0,), NEVER)]
    solved, cost = rule_outcomes(runs, rules)
    assert solved.sum(1).tolist() == [15, 15, 0]
    assert cost.sum(1).tolist() == [60, 45, 30]
    fold = np.arange(n) % 3
    [(s, c)] = heldout_outcomes(solved, cost, np.zeros(n, dtype=int), fold, [0.5])
    assert s.sum() == 15 and c.sum() == 45  # the halting rule, chosen on every fold's training tasks
