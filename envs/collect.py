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
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from hrm_spawn.envs.agents.base import AgentSpec
from hrm_spawn.envs.config import StrictModel
from hrm_spawn.envs.results import Budget
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore, patch_sha

if TYPE_CHECKING:
    from hrm_spawn.envs.agents.base import Agent
    from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig
    from hrm_spawn.envs.tasks import TaskInstance


class BudgetOverrides(StrictModel):
    """Limits applied to every agent on top of its own default budget (unset = keep the default)."""

    max_validations: int | None = Field(None, ge=1)
    max_sandbox_s: float | None = Field(None, gt=0)
    max_turns: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_money_usd: float | None = Field(None, gt=0)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


@dataclass
class AgentSlot:
    """One of the env's K agents: its name, the version the store keys on, its budget."""

    name: str
    version: str  # the store key's version: the agent's version, plus a budget tag when overridden
    budget: Budget = field(default_factory=Budget)
    agent: Agent | None = None  # built lazily: replay needs none
    spec: AgentSpec | None = None  # how to build it in another process (configured agents, overrides)

    def get_agent(self) -> Agent:
        if self.agent is None:
            from hrm_spawn.envs.agents.registry import build_agent, get_agent

            self.agent = build_agent(self.spec) if self.spec is not None else get_agent(self.name)
        return self.agent


def resolve_agents(
    names: Sequence[str], budget: BudgetOverrides | None = None, build: bool = True
) -> list[AgentSlot]:
    """Agent names (``name`` or ``name@version``) -> slots. ``name@version`` needs no agent code (replay)."""
    if not names:
        raise ValueError("agents: the list is empty; give at least one agent name")
    if len(set(names)) != len(names):
        raise ValueError(f"agents: duplicate names in {list(names)}")
    overrides = (budget or BudgetOverrides()).given()
    tag = ""
    if overrides:
        # a different budget gives different outcomes, so it is part of the key
        tag = "+budget." + hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    slots = []
    for entry in names:
        name, _, version = entry.partition("@")
        agent, spec = None, None
        default_budget = Budget()
        if not version or build:
            from hrm_spawn.envs.agents.registry import build_agent, get_spec

            spec = get_spec(name)
            default_budget, agent = spec.budget, build_agent(spec)
            version = version or agent.version
        merged = Budget(**{**default_budget.to_dict(), **overrides})
        slots.append(AgentSlot(name, version + tag, merged, agent, spec))
    return slots


def job_key(task_id: str, slot: AgentSlot, seed: int, start_patch: str) -> OutcomeKey:
    return OutcomeKey(task_id, slot.name, slot.version, seed, patch_sha(start_patch))


def run_job(
    sandbox: Sandbox,
    task: TaskInstance,
    slot: AgentSlot,
    seed: int,
    start_patch: str,
    store: OutcomeStore | None = None,
) -> Outcome:
    """One agent run from ``start_patch`` plus the hidden evaluation of its candidate.

    A candidate that ``store`` already holds a judgement of (most often the empty patch of a run that
    found nothing: two thirds of the quickstart's runs) is not run again: the tests are deterministic,
    so the stored evaluation is copied, with ``duration_s`` 0 since no time went into it.
    """
    if getattr(sandbox, "task", None) is None or sandbox.task.instance_id != task.instance_id:
        sandbox.prepare(task)
    sandbox.reset()
    result = slot.get_agent().run(sandbox, task, start_patch, slot.budget, seed)
    result.agent, result.version, result.seed = slot.name, slot.version, seed
    evaluation = store.find_evaluation(task.instance_id, result.patch) if store is not None else None
    if evaluation is not None:
        evaluation.duration_s = 0.0
    else:
        evaluation = sandbox.evaluate(result.patch)
    return Outcome(result, evaluation, time.time())


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
