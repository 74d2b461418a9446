"""Replay data for trainer tests: tasks on the fixture repository and a hand-filled outcome store.

The store has a structure a policy can learn and a fixed policy cannot exploit fully:

* "flip" tasks: agent ``alpha`` fixes them cheaply (2 units), ``beta`` only half (4 units);
* "swap" tasks: ``beta`` fixes them (4 units), ``alpha`` gets 0.2 (2 units);
* ``gamma`` fixes everything but costs 15 units; delegating a partial fix to ``gamma`` costs 6.

The kind of a task is in its problem statement (the tokens), so the best choice is visible to the policy.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore, patch_sha

AGENTS = ["alpha@1", "beta@1", "gamma@1"]
# (visible = hidden pass-rate, cost units) per (task kind, agent) on the clean repository
SPAWN = {
    "flip": {"alpha": (1.0, 2.0), "beta": (0.5, 4.0), "gamma": (1.0, 15.0)},
    "swap": {"alpha": (0.2, 2.0), "beta": (1.0, 4.0), "gamma": (1.0, 15.0)},
}
DELEGATE = {"alpha": (0.0, 2.0), "beta": (0.0, 4.0), "gamma": (1.0, 6.0)}  # from a partial fix


@dataclass
class ReplayData:
    tasks_path: Path
    store_path: Path
    agents: list[str]
    num_tasks: int

    def env(self, **extra) -> dict:
        return {
            "tasks": str(self.tasks_path),
            "store": str(self.store_path),
            "agents": self.agents,
            "mode": "replay",
            "seeds_per_agent": 1,
            "delegate_seeds": 1,
            "max_steps": 4,
            "max_cost": 40.0,
            "seq_len": 64,
            **extra,
        }

    def eval_args(self, run: Path, out: Path) -> argparse.Namespace:
        """``hrm-spawn eval RUN --tasks ... --split heldout --lambda-sweep --out OUT`` as parsed arguments."""
        return argparse.Namespace(
            checkpoint=str(run),
            tasks=str(self.tasks_path),
            store=None,
            split="heldout",
            lam=None,
            lambda_sweep=True,
            mode="replay",
            out=str(out),
        )


def _outcome(agent: str, patch: str, pass_rate: float, cost_units: float, unit_s: float) -> Outcome:
    f2p_total = 10
    passed = round(pass_rate * f2p_total)
    evaluation = Evaluation(f2p_passed=passed, f2p_total=f2p_total, p2p_passed=5, p2p_total=5)
    result = AgentResult(
        patch=patch,
        status="ok",
        cost=Cost(sandbox_s=cost_units * unit_s, test_runs=1),
        visible_pass_rate=passed / f2p_total,
        agent=agent,
        version="1",
    )
    return Outcome(result, evaluation)


def fill_store(store: OutcomeStore, tasks: list, kinds: list[str]) -> None:
    for task, kind in zip(tasks, kinds, strict=True):
        unit = task.test_run_s
        for agent, (pr, cost) in SPAWN[kind].items():
            patch = f"--- {agent} {task.instance_id}\n"
            store.put(OutcomeKey(task.instance_id, agent, "1", 0), _outcome(agent, patch, pr, cost, unit))
            if pr < 1.0:  # the env only delegates candidates that do not look solved
                for other, (dpr, dcost) in DELEGATE.items():
                    dpatch = f"--- {agent}>{other} {task.instance_id}\n"
                    key = OutcomeKey(task.instance_id, other, "1", 0, patch_sha(patch))
                    store.put(key, _outcome(other, dpatch, dpr if dpr else pr, dcost, unit))


@pytest.fixture
def replay_data(fixture_task, hrm_home: Path) -> ReplayData:
    """16 tasks (8 per kind) derived from the fixture task, in functions of their own (for the split)."""
    tasks, kinds = [], []
    for i in range(16):
        kind = "flip" if i % 2 == 0 else "swap"
        statement = (
            "An operator is flipped: comparison gives the opposite answer."
            if kind == "flip"
            else "Two arguments are swapped in a call."
        )
        tasks.append(
            fixture_task.model_copy(
                update={
                    "instance_id": f"{fixture_task.instance_id}.{kind}{i}",
                    "problem_statement": statement,
                    "entity": f"calc/ops.py::fn{i}",
                    "modifier_kinds": ["func_pm_op_flip" if kind == "flip" else "func_pm_op_swap"],
                    "test_run_s": 0.5,
                }
            )
        )
        kinds.append(kind)
    tasks_path = hrm_home / "tasks.jsonl"
    tasks_path.write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    store_path = hrm_home / "store.sqlite"
    with OutcomeStore(store_path) as store:
        fill_store(store, tasks, kinds)
    return ReplayData(tasks_path, store_path, AGENTS, len(tasks))
