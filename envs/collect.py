"""hrm-spawn collect: fill the outcome store with agent runs, in worker processes, resumably.

For each task: every agent is spawned on the clean buggy repository with seeds 0..S-1; then, up to
``depth`` rounds of delegation, every distinct non-empty candidate of the previous round that does not
look solved (visible pass-rate < 1, the same rule the env's delegate mask uses) goes to every agent as
its start patch (seeds 0..D-1). Each run is evaluated on the hidden tests and stored. Keys already in
the store are skipped, so an interrupted collection resumes without redoing finished work.

Only agent outcomes are stored: a job that ends in an infrastructure failure (the line is
:func:`hrm_spawn.envs.jobs.infrastructure_fault`) is recorded in the store's ``failed_jobs`` with its
kind and reason, counted apart, and run again by the next collect; ``collect`` exits non-zero when any
job failed. Jobs run on an :class:`~hrm_spawn.envs.executors.Executor`: worker processes on this machine
(``--backend local``) or Ray actors (``--backend ray``), each with one Sandbox; a job whose worker died
runs once more elsewhere. The collector takes a lease in the store on every job it runs and renews it
while it lives, so two collectors on one store never run the same job. The parent process alone writes
outcomes and decides the jobs of the next round.

``collect_jobs`` runs one explicit frontier of jobs that way (the loop every round of ``collect`` goes
through); ``eval --mode cached|live`` and live/cached training hand it the runs their policy steps
(trainers/backend_env.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agent_slots import (  # noqa: F401  (re-exported for existing imports)
    AgentSlot,
    BudgetOverrides,
    job_key,
    resolve_agents,
)
from hrm_spawn.envs.executors import Executor, LocalExecutor
from hrm_spawn.envs.jobs import WORKER_DIED, Job, JobDone, RunnerSpec, infrastructure_fault, run_job
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore

__all__ = [
    "AgentSlot",
    "BudgetOverrides",
    "CollectCounts",
    "Frontier",
    "collect",
    "collect_jobs",
    "job_key",
    "make_executor",
    "resolve_agents",
    "run_job",
    "runner_spec",
]

# jobs to run: (task id, agent name, seed, start patch; "" for the clean repository)
Frontier = Sequence[tuple[str, str, int, str]]

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import SandboxConfig
    from hrm_spawn.envs.tasks import TaskInstance


# -- the collector -------------------------------------------------------------------------------------


@dataclass
class CollectCounts:
    jobs: int = 0  # jobs considered
    skipped: int = 0  # already in the store (or finished meanwhile by another collector)
    ran: int = 0  # outcomes stored by this collect
    failed: int = 0  # failed jobs (infrastructure), recorded in the store's failed_jobs
    retried: int = 0  # jobs run again after their worker died
    statuses: Counter = field(default_factory=Counter)  # agent status of each outcome this collect stored
    failed_by_kind: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # what the jobs left behind: the keys with an outcome in the store now (run or found), the keys that
    # failed, and the candidates they produced (task -> {patch: best visible pass-rate})
    stored: set[OutcomeKey] = field(default_factory=set)
    failed_keys: set[OutcomeKey] = field(default_factory=set)
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, other: CollectCounts) -> None:
        """Add ``other``'s counts (a later round's) to these; its keys join, its candidates replace."""
        for name in ("jobs", "skipped", "ran", "failed", "retried"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.statuses.update(other.statuses)
        self.failed_by_kind.update(other.failed_by_kind)
        self.errors.extend(other.errors)
        self.stored |= other.stored
        self.failed_keys |= other.failed_keys
        self.candidates = other.candidates

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "skipped": self.skipped, "ran": self.ran, "failed": self.failed}

    def summary(self) -> dict[str, Any]:
        """The CLI's report: clean runs, agent errors and agent timeouts apart; failed jobs by kind."""
        return {
            **self.to_dict(),
            "clean": self.statuses["ok"],
            "budget_exhausted": self.statuses["budget_exhausted"],
            "agent_errors": self.statuses["error"],
            "agent_timeouts": self.statuses["timeout"],
            "failed_by_kind": dict(sorted(self.failed_by_kind.items())),
            "retried": self.retried,
        }


@dataclass
class LeasePolicy:
    """How long a collector's claim on a job lasts without a heartbeat, and how often it beats."""

    ttl_s: float = 60.0
    heartbeat_s: float = 5.0
    poll_s: float = 0.5  # how often a job another collector holds is looked at again

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.ttl_s:
            raise ValueError(f"leases: need 0 < heartbeat_s < ttl_s (got {self.heartbeat_s}, {self.ttl_s})")


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
    backend: str = "local",
    address: str | None = None,
    retry_errors: bool = False,
    leases: LeasePolicy | None = None,
    executor: Executor | None = None,
) -> CollectCounts:
    """Run every (task, agent, seed, start patch) job not yet in the store; returns the counts.

    ``backend`` is ``local`` (worker processes on this machine) or ``ray`` (Ray actors; ``address`` of
    a running cluster, or a local Ray when None). Failed jobs (infrastructure) are recorded in the store
    and never stored as outcomes; a stored outcome that the line of :func:`jobs.infrastructure_fault`
    rejects (written before it existed) is run again, and so is an agent error when ``retry_errors``.
    A running ``executor`` (built on :func:`runner_spec` of the same store, agents and sandbox) is used
    as it is and left running, so several collects can share one pool or Ray cluster.
    """
    from hrm_spawn.envs.sandbox import SandboxConfig

    if workers < 1 or seeds < 1 or depth < 0 or delegate_seeds < 1:
        raise ValueError(
            f"collect: workers, seeds, delegate_seeds must be >= 1 and depth >= 0 "
            f"(got {workers}, {seeds}, {delegate_seeds}, {depth})"
        )
    store = store if isinstance(store, OutcomeStore) else OutcomeStore(store)
    _check_collectable(tasks, store)
    slots = [a if isinstance(a, AgentSlot) else None for a in agents]
    if any(s is None for s in slots):
        slots = resolve_agents([str(a) for a in agents], budget)
    sandbox_config = sandbox_config or SandboxConfig()
    _clean_stale_sandboxes()
    total = CollectCounts()
    # round 0: spawns on the clean repository
    frontier = [(t.instance_id, s.name, seed, "") for t in tasks for s in slots for seed in range(seeds)]
    if executor is None:
        executor = make_executor(backend, workers, runner_spec(store, slots, sandbox_config), address)
        owned: contextlib.AbstractContextManager = executor
    else:
        owned = contextlib.nullcontext(executor)
    with owned:
        for round_no in range(depth + 1):
            if not frontier:
                break
            label = "collect (spawn)" if round_no == 0 else f"collect (delegate {round_no})"
            done = collect_jobs(
                tasks, slots, store, frontier, executor, progress, label, retry_errors, leases
            )
            total.add(done)
            frontier = [
                (task_id, s.name, seed, patch)
                for task_id, patches in done.candidates.items()
                for patch, visible in patches.items()
                if visible < 1.0
                for s in slots
                for seed in range(delegate_seeds)
            ]
    return total


def collect_jobs(
    tasks: Sequence[TaskInstance],
    slots: Sequence[AgentSlot],
    store: OutcomeStore,
    frontier: Frontier,
    executor: Executor,
    progress: bool = True,
    label: str = "collect",
    retry_errors: bool = False,
    leases: LeasePolicy | None = None,
    rerun: bool = False,
) -> CollectCounts:
    """Run the jobs of ``frontier`` on a running ``executor`` into ``store``; returns what happened.

    The one loop of every collection (``collect`` runs its rounds through here; ``eval --mode live``
    its policy's jobs): each job is leased in the store while it runs, a job whose key is stored is
    skipped (unless ``rerun``: a fresh run replaces the stored row, as live mode asks), a failed job
    (infrastructure) is recorded in ``failed_jobs`` and never stored as an outcome. ``tasks`` must hold
    every task the frontier names; ``slots`` every agent (the slots the executor's workers were built on).
    """
    _check_collectable(tasks, store)
    loop = _Loop(
        store, list(slots), {t.instance_id: t for t in tasks}, leases or LeasePolicy(), retry_errors, rerun
    )
    with _Progress(progress) as bar:
        loop.run_round(executor, list(dict.fromkeys(frontier)), bar, label)  # each job once
    return loop.counts


def _check_collectable(tasks: Sequence[TaskInstance], store: OutcomeStore) -> None:
    """Refuse up front what every job would fail on: id-only tasks, a store that counts in another unit."""
    id_only = [t.instance_id for t in tasks if getattr(t, "replay_only", False)]
    if id_only:
        shown = ", ".join(id_only[:3]) + (f" and {len(id_only) - 3} more" if len(id_only) > 3 else "")
        raise ValueError(
            f"collect: {len(id_only)} task(s) are known only by id (replay_only: imported from another "
            f"harness) and cannot run live: {shown}"
        )
    if store.cost_unit != "test_runs":
        raise ValueError(
            f"collect: the store {store.path} counts cost in {store.cost_unit!r} (an imported table); "
            "runs collected here count test runs: collect into another store"
        )


def runner_spec(store: OutcomeStore, slots: Sequence[AgentSlot], sandbox_config: SandboxConfig) -> RunnerSpec:
    """What each worker of an executor needs: the store's path, the sandbox config, the agents' slots."""
    return RunnerSpec(
        str(store.path),
        sandbox_config.model_dump(),
        [(s.name, s.version, s.budget.to_dict(), s.spec.to_dict() if s.spec else None) for s in slots],
    )


def make_executor(backend: str, workers: int, spec: RunnerSpec, address: str | None = None) -> Executor:
    """The local process pool or the Ray backend, behind one interface."""
    if backend == "local":
        if address:
            raise ValueError("collect: --address is for --backend ray")
        return LocalExecutor(workers, spec)
    if backend == "ray":
        from hrm_spawn.envs.ray_backend import RayExecutor

        return RayExecutor(workers, spec, address=address)
    raise ValueError(f"collect: unknown backend {backend!r} (choose local or ray)")


def _clean_stale_sandboxes() -> None:
    """Remove the sandbox folders that dead workers left behind (the sandbox module knows which are stale)."""
    from hrm_spawn.envs import sandbox
    from hrm_spawn.envs.paths import data_dir

    clean = getattr(sandbox, "clean_stale_sandboxes", None)  # added by the sandbox work of issue 16
    if clean is not None:
        clean(data_dir() / "sandboxes")


class _Loop:
    """The collector's one loop over any executor: leases, submissions, retries, the store's writes."""

    def __init__(
        self,
        store: OutcomeStore,
        slots: list[AgentSlot],
        tasks: dict[str, TaskInstance],
        leases: LeasePolicy,
        retry_errors: bool,
        rerun: bool = False,
    ):
        self.store, self.slots, self.tasks, self.leases = store, slots, tasks, leases
        self.retry_errors, self.rerun_all = retry_errors, rerun
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.counts = CollectCounts()
        self._beat = time.monotonic()

    def run_round(
        self, executor: Executor, frontier: list[tuple[str, str, int, str]], bar: _Progress, label: str
    ) -> None:
        """Run one round's jobs; its candidates (task -> {patch: best visible pass-rate}) go to the counts."""
        candidates = self.counts.candidates
        pending: deque[tuple[Job, float | None]] = deque()
        for task_id, agent, seed, start in frontier:
            self.counts.jobs += 1
            key = job_key(task_id, _slot(self.slots, agent), seed, start)
            stored = self.store.get(key)
            if stored is not None and not self._rerun(stored):
                self.counts.skipped += 1
                self.counts.stored.add(key)
                _note(candidates, task_id, stored)
                continue
            task = self.tasks[task_id].model_dump(mode="json")
            pending.append((Job(task, agent, seed, start, key), stored.created_at if stored else None))
        bar.start_round(label, len(pending))
        waiting: list[tuple[Job, float | None]] = []  # held by another collector
        in_flight: dict[OutcomeKey, tuple[Job, float | None]] = {}
        try:
            while pending or waiting or in_flight:
                while pending and len(in_flight) < executor.capacity:
                    job, replacing = pending.popleft()
                    if self.store.try_lease(job.key, self.owner, self.leases.ttl_s, replacing):
                        executor.submit(job)
                        in_flight[job.key] = (job, replacing)
                    else:
                        waiting.append((job, replacing))
                if in_flight:
                    finished = executor.wait(min(self.leases.heartbeat_s, self.leases.poll_s))
                else:
                    time.sleep(self.leases.poll_s)
                    finished = []
                self._heartbeat()
                for done in finished:
                    job, replacing = in_flight.pop(done.key)
                    retry = self._finish(job, done, candidates)
                    if retry is not None:
                        pending.appendleft((retry, replacing))
                    else:
                        bar.advance()
                waiting = self._look_again(waiting, pending, candidates, bar)
        finally:
            for key in in_flight:  # interrupted: give the jobs back at once rather than at expiry
                self.store.release_lease(key, self.owner)

    def _rerun(self, stored: Outcome) -> bool:
        """A stored row that is not a true outcome (written before the line existed), or an agent error
        when asked to retry those."""
        if self.rerun_all or infrastructure_fault(stored) is not None:
            return True
        return self.retry_errors and stored.result.status == "error"

    def _finish(self, job: Job, done: JobDone, candidates: dict[str, dict[str, float]]) -> Job | None:
        """Store an outcome or record a failure; returns the job to run again when its worker died once."""
        if done.outcome is not None:
            self.store.put(job.key, done.outcome)  # also drops the lease and any earlier failure record
            self.counts.ran += 1
            self.counts.stored.add(job.key)
            self.counts.statuses[done.outcome.result.status] += 1
            _note(candidates, job.key.instance_id, done.outcome)
            return None
        if done.kind == WORKER_DIED and job.attempt == 1:
            self.counts.retried += 1  # on whichever worker is free next (another process or actor)
            return job.again()
        attempts = done.attempts + job.attempt - 1
        self.store.record_failure(job.key, done.kind, done.reason, attempts)
        self.store.release_lease(job.key, self.owner)
        self.counts.failed += 1
        self.counts.failed_keys.add(job.key)
        self.counts.failed_by_kind[done.kind] += 1
        self.counts.errors.append(f"{job.key} [{done.kind}]: {done.reason}")
        return None

    def _look_again(
        self,
        waiting: list[tuple[Job, float | None]],
        pending: deque[tuple[Job, float | None]],
        candidates: dict[str, dict[str, float]],
        bar: _Progress,
    ) -> list[tuple[Job, float | None]]:
        """Jobs another collector held: count them when it stored them, take them when its lease ended."""
        still = []
        for job, replacing in waiting:
            created = self.store.created_at(job.key)
            if created is not None and created != replacing:
                stored = self.store.get(job.key)
                assert stored is not None
                self.counts.skipped += 1
                self.counts.stored.add(job.key)
                _note(candidates, job.key.instance_id, stored)
                bar.advance()
            elif self.store.lease(job.key) is None:
                pending.append((job, replacing))
            else:
                still.append((job, replacing))
        return still

    def _heartbeat(self) -> None:
        if time.monotonic() - self._beat >= self.leases.heartbeat_s:
            self.store.renew_leases(self.owner, self.leases.ttl_s)
            self._beat = time.monotonic()


def _slot(slots: list[AgentSlot], name: str) -> AgentSlot:
    return next(s for s in slots if s.name == name)


def _note(candidates: dict[str, dict[str, float]], task_id: str, outcome: Outcome) -> None:
    patch, visible = outcome.result.patch, outcome.result.visible_pass_rate
    if patch:
        patches = candidates.setdefault(task_id, {})
        patches[patch] = max(patches.get(patch, 0.0), visible)


class _Progress:
    """One display per round of jobs, through the shared helper (plain lines when not on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        return self

    def start_round(self, label: str, total: int) -> None:
        from hrm_spawn.envs.progress import progress

        self._close()
        if self.enabled and total:
            self._bar = progress(label, total, unit="run").__enter__()

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self._close()


def cli_collect(args: argparse.Namespace) -> int:
    """``hrm-spawn collect --tasks FILE --agents a,b --store DB [--workers W] [--backend local|ray] [--address A]
    [--retry-errors] [--config FILE] [--split S] [k=v ...]``.

    The env config (``--config``, default ``configs/env/default.yaml``) gives seeds, delegate seeds,
    sandbox and budget; ``--tasks/--agents/--store/--split`` and overrides win over it. Prints one JSON
    summary (clean runs, agent errors, agent timeouts, failed jobs by kind); exit 1 when a job failed.
    """
    from hrm_spawn.envs.config import ConfigError, load_config
    from hrm_spawn.envs.env_config import EnvConfig, load_env_tasks

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
    try:
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
            backend=getattr(args, "backend", None) or "local",
            address=getattr(args, "address", None),
            retry_errors=bool(getattr(args, "retry_errors", False)),
        )
    except ValueError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"store": str(store_path), "tasks": len(tasks), **counts.summary()}))
    for error in counts.errors[:5]:
        print(f"failed: {error}", file=sys.stderr)
    if counts.failed:
        print(
            f"collect: {counts.failed} job(s) failed outside the agents (kept in the store's failed_jobs, "
            "not as outcomes); run collect again to retry them",
            file=sys.stderr,
        )
    return 1 if counts.failed else 0
