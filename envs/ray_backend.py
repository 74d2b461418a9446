"""``collect --backend ray``: Ray actors that each own one Sandbox, behind the collector's Executor interface.

With no address a local Ray is started for the collect (``workers`` CPUs, a small object store) and
stopped after it; with ``address`` the collector joins a running cluster (``ray start --head`` on one
machine, ``ray start --address HEAD:PORT`` on the others) and leaves it running. Actors are spread over
the nodes. An actor that dies (its process killed, its node lost) returns its job as a ``worker_died``
failure; the collector runs that job once more on another actor, and a fresh actor takes the dead one's
place. An actor still running its job past the spec's ``job_limit`` (counted from when the actor was
ready, as in the local pool) is killed (``ray.kill``: a running actor task cannot be cancelled) and
replaced the same way; its job fails with kind ``worker_hung`` and is not retried. A killed actor does
not close its sandbox: ``clean_stale_sandboxes`` removes the folder later, as for a dead one. The store
stays with the collector: actors send outcomes back, and read the store (for the reuse of identical
verdicts) only where its path is reachable from their node.

Needs the ``ray`` extra: ``pip install 'hrm-spawn[ray]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from hrm_spawn.envs.executors import (
    WORKER_DIED,
    WORKER_HUNG,
    Executor,
    hung_reason,
    job_deadline,
    until_first_limit,
)
from hrm_spawn.envs.jobs import Job, JobDone, RunnerSpec

# A local Ray for one collect: enough object store for job records, far below a small machine's memory.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
# Environment the actors need to find the same data dir and test/agent modules as the collector.
_FORWARDED_ENV = ("HRM_SPAWN_HOME", "HRM_SPAWN_DEBUG")


class SandboxActor:
    """One Ray actor: the spec's runner (a :class:`~hrm_spawn.envs.jobs.JobRunner`: one Sandbox) in its own
    worker process."""

    def __init__(self, spec: RunnerSpec, env: dict[str, str], sys_path: list[str]):
        os.environ.update(env)
        # the collector's import path first, so agents named module:Class import here as they do there
        sys.path[:0] = [p for p in sys_path if p not in sys.path]
        self.runner = spec.build()

    def ready(self) -> str:
        return self.runner.name

    def run(self, job: Job) -> JobDone:
        return self.runner.run(job)

    def close(self) -> None:
        self.runner.close()


@dataclass
class _Actor:
    handle: Any  # a Ray ActorHandle of SandboxActor
    ready: Any  # the ObjectRef of its ready(): done once the actor has started; its value names it


@dataclass
class _Running:
    actor: _Actor
    job: Job
    deadline: float | None = None  # time.monotonic() after which the job counts as hung; set once ready


class RayExecutor(Executor):
    """``workers`` SandboxActors on a local Ray or the cluster at ``address``."""

    def __init__(
        self,
        workers: int,
        spec: RunnerSpec,
        address: str | None = None,
        cpus_per_actor: float = 1.0,
        start_timeout_s: float = 300.0,
    ):
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("collect --backend ray needs Ray: pip install 'hrm-spawn[ray]'") from exc
        if workers < 1:
            raise ValueError(f"RayExecutor: workers must be >= 1 (got {workers})")
        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            self._init(address, workers)
        self._spec = spec
        self._args = (
            spec,
            {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ},
            [p for p in sys.path if p],
        )
        self._actor_cls = ray.remote(num_cpus=cpus_per_actor, max_restarts=0, max_task_retries=0)(
            SandboxActor
        ).options(scheduling_strategy="SPREAD")
        self._idle = [self._start() for _ in range(workers)]
        self._running: dict[Any, _Running] = {}  # by the ObjectRef of the job's result
        self._capacity = workers
        try:
            ray.get([a.ready for a in self._idle], timeout=start_timeout_s)
        except ray.exceptions.GetTimeoutError as exc:
            resources = ray.cluster_resources()
            self.close()
            raise RuntimeError(
                f"collect --backend ray: {workers} actors of {cpus_per_actor:g} CPU did not start within "
                f"{start_timeout_s:g} s; the cluster has {resources.get('CPU', 0):g} CPUs "
                "(fewer --workers, or more nodes)"
            ) from exc

    def _init(self, address: str | None, workers: int) -> None:
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if address:
            self._ray.init(address=address, **options)
        else:
            self._ray.init(
                num_cpus=workers,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                **options,
            )
        self._started_ray = True

    @property
    def capacity(self) -> int:
        return self._capacity

    def _start(self) -> _Actor:
        handle = self._actor_cls.remote(*self._args)
        return _Actor(handle, handle.ready.remote())

    def submit(self, job: Job) -> None:
        if not self._idle:
            raise RuntimeError(f"RayExecutor: all {self.capacity} actors are busy")
        actor = self._idle.pop()
        self._running[actor.handle.run.remote(job)] = _Running(actor, job)
        self._start_clocks()

    def wait(self, timeout_s: float) -> list[JobDone]:
        if not self._running:
            return []
        ray = self._ray
        self._start_clocks()
        timeout_s = until_first_limit(timeout_s, [r.deadline for r in self._running.values()])
        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout_s)
        if ready:  # and whatever else has finished meanwhile
            ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        done = [self._ended(ref) for ref in ready]
        now = time.monotonic()  # a job that ended by now is not hung, even past its limit
        hung = [ref for ref, r in self._running.items() if r.deadline is not None and now >= r.deadline]
        return done + [self._hung(ref) for ref in hung]

    def _start_clocks(self) -> None:
        """Start the limit of each job whose actor is ready: a fresh actor's start-up is not job time."""
        waiting = [r for r in self._running.values() if r.deadline is None]
        if not waiting:
            return
        ready, _ = self._ray.wait([r.actor.ready for r in waiting], num_returns=len(waiting), timeout=0)
        for running in waiting:
            if running.actor.ready in ready:
                running.deadline = job_deadline(self._spec, running.job)

    def _ended(self, ref: Any) -> JobDone:
        """The job's result, or its failure when its actor died or Ray itself failed."""
        ray = self._ray
        running = self._running.pop(ref)
        try:
            done = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            reason = f"the Ray actor running the job died: {exc}"[:2000]
            self._replace(running.actor)
            return self._spec.failed(running.job, WORKER_DIED, reason, self._name(running.actor))
        except ray.exceptions.RayError as exc:  # the runner catches job errors; this is Ray's own
            done = JobDone(running.job.key, None, "ray", f"{type(exc).__name__}: {exc}"[:2000])
        self._idle.append(running.actor)
        return done

    def _hung(self, ref: Any) -> JobDone:
        """Kill the actor still running a job past its limit; the job fails as hung, a fresh actor starts."""
        running = self._running.pop(ref)
        name = self._name(running.actor)
        self._replace(running.actor)
        reason = hung_reason(f"Ray actor {name}", self._spec.job_limit(running.job))
        return self._spec.failed(running.job, WORKER_HUNG, reason, name)

    def _replace(self, actor: _Actor) -> None:
        with contextlib.suppress(Exception):  # already dead, or its node gone
            self._ray.kill(actor.handle, no_restart=True)
        self._idle.append(self._start())  # a fresh actor takes its place, so the capacity is kept

    def _name(self, actor: _Actor) -> str:
        """The actor's runner name (host:pid) once it had started, else ""."""
        ray = self._ray
        ready, _ = ray.wait([actor.ready], timeout=0)
        if ready:
            with contextlib.suppress(ray.exceptions.RayError):
                return str(ray.get(ready[0]))
        return ""

    def close(self) -> None:
        ray = self._ray
        actors = [a.handle for a in self._idle] + [r.actor.handle for r in self._running.values()]
        with contextlib.suppress(Exception):  # each actor removes its sandbox's work copy
            ray.get([a.close.remote() for a in actors], timeout=60)
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self._idle, self._running = [], {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
