"""The empirical-Bayes tree on the hand-filled store (conftest): exact on known tasks, halts on the unknown."""

from __future__ import annotations

import pytest

from hrm_spawn.envs.spawn_env import load_env_config
from hrm_spawn.trainers.bayes_tree import kind_key, run_tree
from hrm_spawn.trainers.evaluate import CascadeTable, ReplaySet, baseline_records, replay_sets
from hrm_spawn.trainers.report import summarize

LAM = 0.02


def _sets(data, **env) -> tuple[ReplaySet, ReplaySet]:
    return replay_sets(load_env_config(data.env(**env)), env.get("split", "all"))


def test_in_sample_tree_finds_the_adaptive_optimum(replay_data) -> None:
    # Every task shows the same profile, so the tree must tell flip from swap by alpha's result: spawn
    # alpha (2 units); on a partial result spawn beta (4 units). Mean cost 4, everything resolved.
    _, everything = _sets(replay_data)
    tree = summarize(run_tree(everything, everything, LAM), LAM)
    assert tree["resolve_rate"] == 1.0 and tree["mean_cost"] == pytest.approx(4.0)
    rest = {
        n: summarize(r, LAM)
        for n, r in baseline_records(everything, everything, LAM, CascadeTable(everything)).items()
    }
    assert tree["score"] >= rest["best_cascade"]["score"] - 1e-9  # it can follow any cascade
    assert tree["score"] <= rest["oracle"]["score"] + 1e-9  # and knows less than the oracle
    assert tree["score"] > rest["single:gamma"]["score"] + 0.1


def test_tree_halts_on_an_observation_no_training_task_showed(replay_data) -> None:
    _, everything = _sets(replay_data)
    flips = [i for i, t in enumerate(everything.tasks) if ".flip" in t.instance_id]
    swaps = [i for i, t in enumerate(everything.tasks) if ".swap" in t.instance_id]

    def subset(rows: list[int]) -> ReplaySet:
        return ReplaySet(
            [everything.tasks[i] for i in rows], [everything.tables[i] for i in rows], everything.spec
        )

    # Known tasks are all "flip": alpha always looks solved. On a swap task alpha's 0.2 is new: it stops.
    records = run_tree(subset(flips), subset(swaps), LAM)
    assert all(r.actions == [1] for r in records)
    assert all(r.pass_rate == pytest.approx(0.2) and r.cost == pytest.approx(2.0) for r in records)
    # With λ so high that no run pays, the tree halts at once.
    assert all(r.actions == [] and r.cost == 0.0 for r in run_tree(everything, everything, lam=1.0))


def test_told_the_kind_the_tree_spends_like_the_oracle(replay_data) -> None:
    # Knowing flip from swap up front, it spawns the one agent that fixes each: alpha (2) or beta (4).
    _, everything = _sets(replay_data)
    records = run_tree(everything, everything, LAM, group_key=kind_key, min_group=2)
    tree = summarize(records, LAM)
    assert tree["resolve_rate"] == 1.0 and tree["mean_cost"] == pytest.approx(3.0)
    assert all(len(r.actions) == 1 for r in records)
