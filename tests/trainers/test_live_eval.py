"""hrm-spawn eval --mode live|cached on the collect backend: real worker processes, the local sandbox.

The checkpoint's Q-head is set by hand (weights 0, biases a fixed preference), so the greedy policy's
episode is known in advance whatever it observes: spawn ``comment``, delegate the candidate to
``comment``, spawn ``other`` (``max_steps`` 3). Each of those runs depends on the one before it (the
delegation continues the spawn's patch), so the fill takes three rounds. The agents note each run in
``$HRM_TEST_MARKS``, so the tests count what really ran.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.comment_run import comment_run
from fixtures.tiny_policy import TINY_POLICY

from hrm_spawn.envs import episode as E
from hrm_spawn.envs.config import build_config
from hrm_spawn.envs.store import CLEAN, OutcomeStore, patch_sha
from hrm_spawn.policies.spawn_policy import SpawnPolicy
from hrm_spawn.trainers.checkpoint import save_checkpoint
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.evaluate import cli_eval, evaluate
from hrm_spawn.trainers.train import run_training

HERE = "test_live_eval"


class _Agent:
    version = "1"

    def run(self, sandbox, task, start_patch, budget, seed):
        depth = 1 if start_patch else 0
        mark = Path(os.environ["HRM_TEST_MARKS"]) / f"{type(self).__name__}-{task.instance_id}-{seed}-{depth}"
        with mark.open("a") as f:
            f.write(f"{os.getpid()}\n")
        self.fault(sandbox)
        return comment_run(sandbox, start_patch, f"{self.name} seed {seed} depth {depth}")

    def fault(self, sandbox) -> None:
        pass


class Comment(_Agent):
    name = "comment"


class Other(_Agent):
    name = "other"


class ShellKill(_Agent):
    """Kills the sandbox's own shell on every try: an infrastructure failure, never an outcome."""

    name = "shell-kill"

    def fault(self, sandbox) -> None:
        sandbox.run("kill -9 $$")


def runs(marks: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in sorted(marks.iterdir())}


def write_tasks(fixture_task, path: Path, n: int) -> list[str]:
    tasks = [
        fixture_task.model_copy(update={"instance_id": f"{fixture_task.instance_id}.{i}"}) for i in range(n)
    ]
    path.write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    return [t.instance_id for t in tasks]


def act_q_config(tasks: Path, store: Path, agents: list[str], mode: str, max_steps: int) -> dict[str, Any]:
    """An ACT Q config on ``tasks``, one seed per agent, on the tiny policy (a fresh dict: callers add to it)."""
    return {
        "algo": "act_q",
        "seed": 0,
        "device": "cpu",
        "env": {
            "tasks": str(tasks),
            "store": str(store),
            "agents": agents,
            "mode": mode,
            "split": "all",
            "seeds_per_agent": 1,
            "delegate_seeds": 1,
            "max_steps": max_steps,
            "max_cost": 1000.0,
            "seq_len": 64,
            "lam": [0.0, 0.1],
        },
        "policy": TINY_POLICY,
    }


def scripted_checkpoint(run_dir: Path, tasks: Path, store: Path, agents: list[str], order: list[int]) -> Path:
    """A checkpoint whose greedy policy prefers the actions of ``order`` (first best), whatever it sees."""
    config = build_config(TrainConfig, act_q_config(tasks, store, agents, mode="replay", max_steps=3))
    layout = E.ActionLayout(len(agents))
    features = E.observation_space(layout, config.env.seq_len)["features"].shape[0]
    policy = SpawnPolicy(config.policy, layout.n, features)
    preference = torch.full((layout.n,), -5.0)
    for rank, action in enumerate(order):
        preference[action] = 5.0 - rank
    with torch.no_grad():
        policy.q_head.weight.zero_()
        policy.q_head.bias.copy_(preference.repeat(config.policy.q_ensemble))
    return save_checkpoint(run_dir, 0, config, {"policy": policy.state_dict()}, {})


@pytest.fixture
def three_step(fixture_task, marks, tmp_path):
    """Two tasks, agents comment and other, the scripted policy: spawn comment, delegate to comment,
    spawn other."""
    ids = write_tasks(fixture_task, tmp_path / "tasks.jsonl", 2)
    agents = [f"{HERE}:Comment", f"{HERE}:Other"]
    layout = E.ActionLayout(2)
    order = [layout.spawn(0), layout.delegate(0), layout.spawn(1), E.HALT]
    store = tmp_path / "store.sqlite"
    ckpt = scripted_checkpoint(tmp_path / "run", tmp_path / "tasks.jsonl", store, agents, order)
    return ckpt, store, ids, float(fixture_task.test_run_s or 1.0)


def test_live_eval_runs_the_policys_jobs_on_two_workers_then_reports_from_the_store(three_step, marks):
    ckpt, store_path, ids, unit_s = three_step
    live = evaluate(ckpt, {}, "all", 0.0, False, "live", show_progress=False, backend="local", workers=2)
    summary = live["meta"]["live"]
    assert (summary["ran"], summary["failed"], summary["rounds"], summary["episodes"]) == (6, 0, 3, 2)
    store = OutcomeStore(store_path)
    assert len(store) == 6 and store.failed_jobs() == [] and store.leases() == []
    for task_id in ids:  # exactly the policy's three runs, each run once
        rows = dict(store.iter_task(task_id))
        spawned = {k.agent.split(":")[-1]: o for k, o in rows.items() if k.start_patch_sha == CLEAN}
        (delegated,) = [k for k in rows if k.start_patch_sha != CLEAN]
        assert set(spawned) == {"Comment", "Other"} and delegated.agent.endswith("Comment")
        assert delegated.start_patch_sha == patch_sha(spawned["Comment"].result.patch)
        assert all(o.evaluation.applied and o.result.status == "ok" for o in rows.values())
    expected = {f"{a}-{t}-0-{d}": 1 for t in ids for a, d in (("Comment", 0), ("Comment", 1), ("Other", 0))}
    assert runs(marks) == expected
    # the report's policy stepped exactly those runs: its mean cost is theirs, per task
    rows = [o for t in ids for _, o in store.iter_task(t)]
    spent = sum(o.result.cost.in_unit("test_runs", unit_s) for o in rows) / len(ids)
    assert live["policies"]["hrm"]["mean_cost"] == pytest.approx(spent) and spent > 0

    # the report is the replay eval of the filled store, number for number
    replay = evaluate(ckpt, {}, "all", 0.0, False, "replay", show_progress=False)
    assert replay["policies"] == live["policies"] and replay["targets"] == live["targets"]
    assert "live" not in replay["meta"]

    # cached: the store has every run the policy steps, so nothing runs (no worker even starts)
    created = {k: store.created_at(k) for k in store.keys()}  # noqa: SIM118 (a store)
    cached = evaluate(ckpt, {}, "all", 0.0, False, "cached", show_progress=False, workers=2)
    assert (cached["meta"]["live"]["ran"], cached["meta"]["live"]["rounds"]) == (0, 0)
    assert runs(marks) == expected and cached["policies"] == live["policies"]

    # live again: every run the policy steps is run afresh and replaces its row
    again = evaluate(ckpt, {}, "all", 0.0, False, "live", show_progress=False, workers=2)
    assert (again["meta"]["live"]["ran"], again["meta"]["live"]["skipped"]) == (6, 0)
    assert runs(marks) == {name: 2 for name in expected}
    assert set(store.keys()) == set(created) and all(store.created_at(k) > t for k, t in created.items())


def test_a_failed_job_in_a_live_eval_is_no_outcome_and_the_eval_exits_1(
    fixture_task, marks, tmp_path, capsys
):
    write_tasks(fixture_task, tmp_path / "tasks.jsonl", 1)
    agents = [f"{HERE}:ShellKill", f"{HERE}:Comment"]
    layout = E.ActionLayout(2)
    store_path = tmp_path / "store.sqlite"
    ckpt = scripted_checkpoint(
        tmp_path / "run", tmp_path / "tasks.jsonl", store_path, agents, [layout.spawn(1), layout.spawn(0)]
    )  # spawn comment (an outcome), then shell-kill (a failed job)
    args = argparse.Namespace(
        checkpoint=str(ckpt),
        tasks=None,
        store=None,
        split="all",
        lam=0.0,
        lambda_sweep=False,
        mode="live",
        backend="local",
        workers=1,
        address=None,
        out=str(tmp_path / "report"),
    )
    assert cli_eval(args) == 1
    assert "1 job(s) failed outside the agents" in capsys.readouterr().err
    store = OutcomeStore(store_path)
    (failed,) = store.failed_jobs()
    assert failed.key.agent.endswith("ShellKill") and failed.key.seed == 0 and failed.attempts == 2
    # the failure is no outcome; the episode stopped there
    assert [k.agent for k in store.keys()] == [f"{HERE}:Comment"] and store.leases() == []  # noqa: SIM118
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    meta = report["meta"]["live"]
    assert (meta["failed"], meta["ran"], meta["rounds"], meta["episodes"]) == (1, 1, 2, 0)
    assert meta["unfinished"] == [failed.key.instance_id] and sum(meta["failed_by_kind"].values()) == 1
    task = failed.key.instance_id
    assert runs(marks) == {f"Comment-{task}-0-0": 1, f"ShellKill-{task}-0-0": 2}  # tried on a fresh sandbox
    # the replay masks the run that failed: the policy's episode ends after the comment run
    assert report["policies"]["hrm"]["mean_cost"] == pytest.approx(
        next(o for _, o in store.iter_task(task)).result.cost.in_unit("test_runs", fixture_task.test_run_s)
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_cached_eval_on_the_ray_backend_fills_the_store_once(fixture_task, marks, tmp_path, monkeypatch):
    """The same fill on Ray actors (a local Ray, started and stopped by the executor)."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    (task,) = write_tasks(fixture_task, tmp_path / "tasks.jsonl", 1)
    agents = [f"{HERE}:Comment", f"{HERE}:Other"]
    layout = E.ActionLayout(2)
    store_path = tmp_path / "store.sqlite"
    ckpt = scripted_checkpoint(
        tmp_path / "run", tmp_path / "tasks.jsonl", store_path, agents, [layout.spawn(0), layout.spawn(1)]
    )
    report = evaluate(ckpt, {}, "all", 0.0, False, "cached", show_progress=False, backend="ray", workers=2)
    live = report["meta"]["live"]
    assert (live["ran"], live["failed"], live["rounds"], live["episodes"]) == (2, 0, 2, 1)
    assert runs(marks) == {f"Comment-{task}-0-0": 1, f"Other-{task}-0-0": 1}
    assert len(OutcomeStore(store_path)) == 2
    replay = evaluate(ckpt, {}, "all", 0.0, False, "replay", show_progress=False)
    assert replay["policies"] == report["policies"]


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param({}, id="local"),
        pytest.param(
            {"kind": "ray", "workers": 2}, id="ray", marks=[pytest.mark.slow, pytest.mark.timeout(900)]
        ),
    ],
)
def test_cached_act_q_training_runs_each_missing_run_once_on_the_backend(
    fixture_task, marks, tmp_path, monkeypatch, backend
):
    """Training in cached mode: episodes step in lockstep, each step's runs go to two workers (local
    processes, or Ray actors of a local Ray that the executor starts and stops)."""
    if backend:
        pytest.importorskip("ray", reason="the ray extra is not installed")
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    write_tasks(fixture_task, tmp_path / "tasks.jsonl", 2)
    store_path = tmp_path / "store.sqlite"
    agents = [f"{HERE}:Comment", f"{HERE}:Other"]
    config = build_config(
        TrainConfig,
        {
            **act_q_config(tmp_path / "tasks.jsonl", store_path, agents, mode="cached", max_steps=2),
            "act_q": {
                "iterations": 2,
                "num_envs": 2,
                "updates": 1,
                "batch_episodes": 2,
                "epsilon_start": 1.0,
            },
            "checkpoint_every": 2,
            "backend": backend,
        },
    )
    ckpt = run_training(config, tmp_path / "run", progress=False)
    assert (ckpt / "policy.safetensors").is_file()
    store = OutcomeStore(store_path)
    ran = runs(marks)
    # cached: every run the episodes needed ran exactly once, on a worker, and is stored; nothing else ran
    assert ran and set(ran.values()) == {1} and len(store) == len(ran)
    assert store.failed_jobs() == [] and store.leases() == []
    assert all(o.evaluation.applied for t in store.tasks() for _, o in store.iter_task(t))
