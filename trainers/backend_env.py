"""SpawnEnv with its agent runs on a collect backend: ``FillEnv`` reads runs, ``BackendJobs`` makes them.

``FillEnv`` is SpawnEnv (its masks, features and rules; nothing masked for lack of an outcome) whose
runs are read from the store when ``known(key)`` says so; any other run raises :class:`OutcomeNeeded`
naming the job, and a run whose job failed (infrastructure) ends the episode as a sandbox failure does
in SpawnEnv (truncated, ``info["truncated_reason"]``), never as an outcome.

``BackendJobs`` runs such jobs as one frontier on an executor of collect (``collect.collect_jobs``:
leases, ``failed_jobs`` records, counts), started on first need so that nothing to run starts no worker.
What is known: ``cached`` any outcome in the store (only what it lacks runs, as SpawnEnv's cached mode),
``live`` only the runs this ``BackendJobs`` made since ``forget()`` (a fresh run replaces the stored
row, as SpawnEnv's live mode). Eval (trainers/live.py) and live training (rollout.make_source) use both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from hrm_spawn.envs import episode as E
from hrm_spawn.envs.agent_slots import AgentSlot, job_key
from hrm_spawn.envs.collect import CollectCounts, collect_jobs, make_executor, runner_spec
from hrm_spawn.envs.executors import Executor
from hrm_spawn.envs.replay import job_outcome
from hrm_spawn.envs.spawn_env import ReplayMissError, SpawnEnv
from hrm_spawn.envs.store import OutcomeKey, OutcomeStore

BACKEND_MODES = ("live", "cached")


class OutcomeNeeded(ReplayMissError):
    """The episode stepped a run that is not known yet; ``job`` is (task, agent, seed, start patch)."""

    def __init__(self, key: OutcomeKey, job: tuple[str, str, int, str]):
        super().__init__(f"outcome needed: {key}")
        self.key, self.job = key, job


class JobFailed(RuntimeError):
    """The run's job failed outside the agent (recorded in the store's failed_jobs)."""


class FillEnv(SpawnEnv):
    """SpawnEnv in ``live``/``cached`` mode whose runs come from ``jobs`` (a :class:`BackendJobs`)."""

    def __init__(self, config: Any, jobs: BackendJobs):
        if config.mode not in BACKEND_MODES:
            raise ValueError(f"FillEnv: mode {config.mode!r} is not one of {BACKEND_MODES}")
        super().__init__(config, store=jobs.store, slots=jobs.slots)  # its tasks: the config's split
        self.jobs = jobs
        jobs.tasks.update({t.instance_id: t for t in self.tasks})
        self.stopped_by_failure: set[str] = set()  # tasks whose episode ended at a failed job

    def need(self, action: int) -> OutcomeNeeded | None:
        """The job ``action`` would need run first (None: halt, a masked action, or a known run)."""
        if self.task is None or action == E.HALT or not self.action_masks()[action]:
            return None
        k, seed, _, patch = self._job(action)
        key = job_key(self.task.instance_id, self.slots[k], seed, patch)
        if self.jobs.known(key) or key in self.jobs.counts.failed_keys:
            return None
        return OutcomeNeeded(key, (self.task.instance_id, self.slots[k].name, seed, patch))

    def _outcome(self, k: int, seed: int, sha: str, patch: str):
        assert self.task is not None
        slot = self.slots[k]
        key = job_key(self.task.instance_id, slot, seed, patch)
        if key in self.jobs.counts.failed_keys:
            self.stopped_by_failure.add(self.task.instance_id)
            raise JobFailed(f"job {key} failed outside the agent (see the store's failed_jobs)")
        stored = self.store.get(key) if self.jobs.known(key) else None
        if stored is None:
            raise OutcomeNeeded(key, (self.task.instance_id, slot.name, seed, patch))
        return job_outcome(stored, self.unit_s, self.cost_unit, self.config.observe)


class BackendJobs:
    """Runs the jobs episodes need on a collect executor (``backend`` local or ray) into ``store``."""

    def __init__(
        self,
        mode: str,
        store: OutcomeStore,
        slots: list[AgentSlot],
        sandbox_config: Any,
        backend: str = "local",
        workers: int = 1,
        address: str | None = None,
        progress: bool = True,
    ):
        if mode not in BACKEND_MODES:
            raise ValueError(f"BackendJobs: mode {mode!r} is not one of {BACKEND_MODES}")
        self.mode, self.store, self.slots = mode, store, slots
        self.tasks: dict[str, Any] = {}  # by id: the tasks of the FillEnvs built on these jobs
        self.sandbox_config, self.backend, self.workers, self.address = (
            sandbox_config,
            backend,
            workers,
            address,
        )
        self.progress = progress
        self.counts = CollectCounts()
        self.rounds = 0
        self.live_keys: set[OutcomeKey] = set()
        self._stack = contextlib.ExitStack()
        self._executor: Executor | None = None

    def known(self, key: OutcomeKey) -> bool:
        return key in self.live_keys if self.mode == "live" else self.store.contains(key)

    def forget(self) -> None:
        """Live mode: from now on every run is run afresh again (a new batch of episodes)."""
        self.live_keys.clear()

    def run(self, needs: Sequence[OutcomeNeeded], label: str) -> CollectCounts:
        """Run the jobs of ``needs`` (each once) as one frontier; their outcomes become known."""
        frontier = list(dict.fromkeys(n.job for n in needs))
        done = collect_jobs(
            list(self.tasks.values()),
            self.slots,
            self.store,
            frontier,
            self._started(),
            self.progress,
            label,
            rerun=self.mode == "live",
        )
        self.counts.add(done)
        self.live_keys |= done.stored
        self.rounds += 1
        return done

    def before_step(self, pending: Sequence[tuple[Any, int]]) -> None:
        """Lockstep rollouts: the runs the pending (env, action) pairs need, run before they step."""
        needs = [n for env, action in pending if (n := env.unwrapped.need(action)) is not None]
        if needs:
            self.run(needs, f"rollout ({self.mode}) step")

    def _started(self) -> Executor:
        if self._executor is None:
            spec = runner_spec(self.store, self.slots, self.sandbox_config)
            executor = make_executor(self.backend, self.workers, spec, self.address)
            self._executor = self._stack.enter_context(executor)
        return self._executor

    def close(self) -> None:
        self._stack.close()
        self._executor = None

    def __enter__(self) -> BackendJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
