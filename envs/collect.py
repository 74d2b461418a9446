"""hrm-spawn collect: fill the outcome store with agent runs, in worker processes, resumably.

For each task: every agent is spawned on the clean buggy repository with seeds 0..S-1; then, up to
``depth`` rounds of delegation, every distinct non-empty candidate of the previous round that does not
look solved (visible pass-rate < 1, the same rule the env's delegate mask uses) goes to every agent as
its start patch (seeds 0..D-1). Each run is evaluated on the hidden tests and stored. Keys already in
the store are skipped, so an interrupted collection resumes without redoing finished work.

``LocalRuntime`` blocks its event loop, so parallelism comes from processes (spawn context), each with
one Sandbox; the parent process alone decides the jobs of the next round.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agents.base import AgentSpec
from hrm_spawn.envs.results import Budget
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import SandboxConfig
    from hrm_spawn.envs.tasks import TaskInstance


# The job records and runner live in envs/jobs.py (SpawnEnv needs them without collect's executor).
from hrm_spawn.envs.jobs import (  # noqa: E402, F401  (re-exported for existing imports)
    AgentSlot,
    BudgetOverrides,
    job_key,
    resolve_agents,
    run_job,
)

# -- worker processes --------------------------------------------------------------------------------

_W: dict[str, Any] = {}


def _worker_init(
    store_path: str, sandbox_config: dict[str, Any], slots: list[tuple[str, str, dict, dict | None]]
) -> None:
    from multiprocessing.util import Finalize

    from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig

    _W["store"] = OutcomeStore(store_path)
    _W["sandbox"] = Sandbox(SandboxConfig.model_validate(sandbox_config))
    # on a clean pool shutdown, remove the sandbox's work copy and stop its runtime
    Finalize(_W["sandbox"], _W["sandbox"].close, exitpriority=10)
    _W["slots"] = {
        name: AgentSlot(
            name, version, Budget(**budget), spec=AgentSpec.from_dict(name, spec) if spec else None
        )
        for name, version, budget, spec in slots
    }


def _worker_run(job: tuple[dict[str, Any], str, int, str]) -> tuple[OutcomeKey, dict | None, str]:
    """Run one job in a worker; returns (key, summary or None, error text)."""
    from hrm_spawn.envs.tasks import TaskInstance

    record, agent_name, seed, start_patch = job
    task = TaskInstance.model_validate(record)
    slot: AgentSlot = _W["slots"][agent_name]
    key = job_key(task.instance_id, slot, seed, start_patch)
    store: OutcomeStore = _W["store"]
    if store.contains(key):  # another collector got there first
        outcome = store.get(key)
    else:
        try:
            outcome = run_job(_W["sandbox"], task, slot, seed, start_patch, store)
        except Exception as exc:  # a broken job must not stop the others; it is retried next time
            return key, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        store.put(key, outcome)
    assert outcome is not None
    return key, _summary(outcome), ""


def _summary(outcome: Outcome) -> dict[str, Any]:
    return {"patch": outcome.result.patch, "visible": outcome.result.visible_pass_rate}


@dataclass
class CollectCounts:
    jobs: int = 0  # jobs considered
    skipped: int = 0  # already in the store
    ran: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "skipped": self.skipped, "ran": self.ran, "failed": self.failed}


def collect(
    tasks: Sequence[TaskInstance],
    agents: Sequence[str] | Sequence[AgentSlot],
    store: OutcomeStore | str | Path,
    workers: int = 1,
    seeds: int = 1,
    depth: int = 1,
    sandbox_config: SandboxConfig | None = None,
    budget: BudgetOverrides | None = None,
    delegate_seeds: int = 1,
    progress: bool = True,
) -> CollectCounts:
    """Run every (task, agent, seed, start patch) job not yet in the store; returns the counts."""
    from hrm_spawn.envs.sandbox import SandboxConfig

    if workers < 1 or seeds < 1 or depth < 0 or delegate_seeds < 1:
        raise ValueError(
            f"collect: workers, seeds, delegate_seeds must be >= 1 and depth >= 0 "
            f"(got {workers}, {seeds}, {delegate_seeds}, {depth})"
        )
    store = store if isinstance(store, OutcomeStore) else OutcomeStore(store)
    slots = [a if isinstance(a, AgentSlot) else None for a in agents]
    if any(s is None for s in slots):
        slots = resolve_agents([str(a) for a in agents], budget)
    sandbox_config = sandbox_config or SandboxConfig()
    counts = CollectCounts()
    init = (
        str(store.path),
        sandbox_config.model_dump(),
        [(s.name, s.version, s.budget.to_dict(), s.spec.to_dict() if s.spec else None) for s in slots],
    )
    by_id = {t.instance_id: t for t in tasks}
    # round 0: spawns on the clean repository
    frontier = [(t.instance_id, s.name, seed, "") for t in tasks for s in slots for seed in range(seeds)]
    ctx = mp.get_context("spawn")
    with _Progress(progress) as bar, ctx.Pool(workers, _worker_init, init) as pool:
        for round_no in range(depth + 1):
            if not frontier:
                break
            new_candidates: dict[str, dict[str, float]] = {}  # task -> {patch: best visible}
            todo = []
            for job in frontier:
                counts.jobs += 1
                outcome = store.get(job_key(job[0], _slot(slots, job[1]), job[2], job[3]))
                if outcome is not None:
                    counts.skipped += 1
                    _note(new_candidates, job[0], _summary(outcome))
                else:
                    todo.append(job)
            bar.start_round(round_no, len(todo))
            payload = [(by_id[j[0]].model_dump(mode="json"), j[1], j[2], j[3]) for j in todo]
            for key, summary, error in pool.imap_unordered(_worker_run, payload):
                if summary is None:
                    counts.failed += 1
                    counts.errors.append(f"{key}: {error}")
                else:
                    counts.ran += 1
                    _note(new_candidates, key.instance_id, summary)
                bar.advance()
            frontier = [
                (task_id, s.name, seed, patch)
                for task_id, patches in new_candidates.items()
                for patch, visible in patches.items()
                if visible < 1.0
                for s in slots
                for seed in range(delegate_seeds)
            ]
        pool.close()  # let workers exit cleanly (and close their sandboxes) instead of terminate()
        pool.join()
    return counts


def _slot(slots: list[AgentSlot], name: str) -> AgentSlot:
    return next(s for s in slots if s.name == name)


def _note(candidates: dict[str, dict[str, float]], task_id: str, summary: dict[str, Any]) -> None:
    if summary["patch"]:
        patches = candidates.setdefault(task_id, {})
        patches[summary["patch"]] = max(patches.get(summary["patch"], 0.0), summary["visible"])


class _Progress:
    """A rich progress bar (or nothing, when disabled or not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import Progress

            self._progress = Progress(transient=False)
            self._progress.__enter__()
        return self

    def start_round(self, round_no: int, total: int) -> None:
        if self._progress is not None and total:
            label = "spawn" if round_no == 0 else f"delegate {round_no}"
            self._task = self._progress.add_task(f"collect ({label})", total=total)

    def advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def cli_collect(args: argparse.Namespace) -> int:
    """``hrm-spawn collect --tasks FILE --agents a,b --store DB [--workers W] [--config FILE] [--split S] [k=v ...]``.

    The env config (``--config``, default ``configs/env/default.yaml``) gives seeds, delegate seeds,
    sandbox and budget; ``--tasks/--agents/--store/--split`` and overrides win over it.
    """
    from hrm_spawn.envs.config import ConfigError, load_config
    from hrm_spawn.envs.spawn_env import EnvConfig, load_env_tasks

    overrides = list(getattr(args, "overrides", None) or [])
    for name in ("tasks", "store", "split"):
        value = getattr(args, name, None)
        if value:
            overrides.append(f"{name}={value}")
    if getattr(args, "agents", None):
        agents = args.agents if isinstance(args.agents, list) else str(args.agents).split(",")
        overrides.append("agents=[" + ",".join(a.strip() for a in agents if a.strip()) + "]")
    try:
        config = load_config(EnvConfig, getattr(args, "config", None) or "env/default", overrides)
        tasks = load_env_tasks(config)
    except (ConfigError, ValueError) as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    store_path = config.store_path()
    counts = collect(
        tasks,
        config.agents,
        OutcomeStore(store_path),
        workers=int(getattr(args, "workers", None) or os.cpu_count() or 1),
        seeds=config.seeds_per_agent,
        depth=config.collect_depth,
        sandbox_config=config.sandbox,
        budget=config.budget,
        delegate_seeds=config.delegate_seeds,
    )
    print(json.dumps({"store": str(store_path), "tasks": len(tasks), **counts.to_dict()}))
    for error in counts.errors[:5]:
        print(f"failed: {error}", file=sys.stderr)
    return 1 if counts.failed else 0
