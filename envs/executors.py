"""Where jobs run: the executor interface, and the local pool of worker processes that each own a sandbox.

An :class:`Executor` holds up to ``capacity`` jobs at once on workers that each own one sandbox. What a
worker does is given by a :class:`WorkerSpec`: plain data, pickled to each worker, whose ``build()``
makes the worker's :class:`Runner` (its sandbox and whatever else it keeps between jobs). The collector
(``collect._Loop``) runs agent jobs on it (:class:`hrm_spawn.envs.jobs.RunnerSpec`); ``tasks build``
generates and validates candidate bugs on it (:mod:`hrm_spawn.envs.build`).

A worker that dies (the OOM killer, a SIGKILL, an agent that kills its own process) never hangs the
caller: its job comes back as the spec's failed result of kind ``worker_died`` and a fresh worker takes
its place. A worker that is alive but stuck (a job running past the spec's ``job_limit``) is stopped
and replaced the same way, its job failed with kind ``worker_hung``. The Ray backend
(:mod:`hrm_spawn.envs.ray_backend`) implements the same interface with both guarantees (a hung actor is
killed rather than stopped), through the helpers below (:func:`job_deadline`, :func:`hung_reason`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

READY = "ready"  # a worker's first message: imported and built, so start-up is not counted as job time
START_TIMEOUT_S = 300.0
STOP_GRACE_S = 10.0  # a stopped worker's time to close its sandbox before it is killed
WORKER_DIED = "worker_died"
WORKER_HUNG = "worker_hung"


class Runner(Protocol):
    """A worker's state between jobs (one sandbox): runs one job at a time."""

    def run(self, job: Any) -> Any:
        """The job's result; a runner reports its own failures in the result rather than raising."""

    def close(self) -> None:
        """Release the sandbox; called once when the worker stops."""


class WorkerSpec(Protocol):
    """What every worker needs (pickled to it), and how a job that lost its worker is reported."""

    def build(self) -> Runner:
        """Called once in each worker before it says it is ready."""

    def failed(self, job: Any, kind: str, reason: str, worker: str) -> Any:
        """The result for ``job`` when its worker died or hung (``kind`` is WORKER_DIED or WORKER_HUNG)."""

    def job_limit(self, job: Any) -> float | None:
        """Seconds after which a running ``job`` counts as hung; None: no limit."""


class Executor(ABC):
    """Runs jobs on workers that each own one sandbox."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many jobs it runs at once."""

    @abstractmethod
    def submit(self, job: Any) -> None:
        """Start ``job`` on an idle worker (the caller keeps at most ``capacity`` in flight)."""

    @abstractmethod
    def wait(self, timeout_s: float) -> list[Any]:
        """Results of jobs that ended (or lost their worker) since the last call; [] after ``timeout_s``."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers (each closes its sandbox; a job still running is abandoned); safe to call twice."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)  # unwinds the job, so the worker's ``finally`` closes its sandbox


def _worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """A worker process: build the runner, then run jobs from ``conn`` until it sends None."""
    from hrm_spawn.envs.logs import setup_worker_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    signal.signal(signal.SIGTERM, _stop)
    setup_worker_logging()  # the run's handler and its once-per-run warnings, across processes
    runner = spec.build()
    try:
        conn.send(READY)
        while True:
            job = conn.recv()
            if job is None:
                break
            conn.send(runner.run(job))
    except (EOFError, OSError):  # the parent is gone
        pass
    finally:
        runner.close()


@dataclass
class _Worker:
    process: Any  # a multiprocessing Process of the executor's start method
    conn: Connection
    job: Any = None
    deadline: float | None = None  # time.monotonic() after which the running job counts as hung


class LocalExecutor(Executor):
    """``workers`` processes (not threads: ``LocalRuntime`` blocks its event loop).

    ``start_method`` is multiprocessing's: ``spawn`` (the default; a fresh interpreter, safe whatever
    threads the parent runs) or ``fork`` (a copy of the parent: the workers inherit its imports and
    caches, seconds saved each, for a parent that starts no threads of its own before the pool).
    """

    def __init__(self, workers: int, spec: WorkerSpec, start_method: str = "spawn"):
        if workers < 1:
            raise ValueError(f"LocalExecutor: workers must be >= 1 (got {workers})")
        self._ctx = mp.get_context(start_method)
        self._spec = spec
        self._workers = [self._start() for _ in range(workers)]  # all start at once, then each is awaited
        try:
            for worker in self._workers:
                self._await_ready(worker)
        except RuntimeError:
            self.close()
            raise

    @property
    def capacity(self) -> int:
        return len(self._workers)

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, self._spec), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def _await_ready(self, worker: _Worker) -> None:
        ready = wait([worker.conn, worker.process.sentinel], START_TIMEOUT_S)
        try:
            message = worker.conn.recv() if worker.conn in ready else None
        except (EOFError, OSError):
            message = None
        if message != READY:
            worker.process.kill()
            worker.process.join(timeout=5)
            raise RuntimeError(f"a worker process did not start ({_death(worker.process)})")

    def _replace(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.process.join(timeout=5)
        fresh = self._start()
        self._workers[self._workers.index(worker)] = fresh
        self._await_ready(fresh)

    def submit(self, job: Any) -> None:
        worker = next((w for w in self._workers if w.job is None), None)
        if worker is None:
            raise RuntimeError(f"LocalExecutor: all {self.capacity} workers are busy")
        if not worker.process.is_alive():  # died while idle
            self._replace(worker)
            worker = next(w for w in self._workers if w.job is None and w.process.is_alive())
        worker.conn.send(job)
        worker.job = job
        worker.deadline = job_deadline(self._spec, job)

    def wait(self, timeout_s: float) -> list[Any]:
        busy = [w for w in self._workers if w.job is not None]
        if not busy:
            return []
        timeout_s = until_first_limit(timeout_s, [w.deadline for w in busy])
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout_s))
        done = []
        now = time.monotonic()
        for worker in busy:
            if worker.conn in ready or worker.process.sentinel in ready:
                done.append(self._ended(worker))
            elif worker.deadline is not None and now >= worker.deadline:
                done.append(self._hung(worker))
        return done

    def _ended(self, worker: _Worker) -> Any:
        """The result a worker sent, or the failed result when it died without sending one."""
        job, worker.job = worker.job, None
        try:
            # a result sent just before the process exited is still read here
            result = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            result = None
        if result is not None:
            return result
        worker.process.join(timeout=5)
        failed = self._spec.failed(job, WORKER_DIED, _death(worker.process), str(worker.process.pid))
        self._replace(worker)
        return failed

    def _hung(self, worker: _Worker) -> Any:
        """Stop a worker whose job ran past its limit; the job fails as hung and a fresh worker starts."""
        job, worker.job = worker.job, None
        limit = self._spec.job_limit(job)
        pid = worker.process.pid
        _terminate(worker.process)
        failed = self._spec.failed(job, WORKER_HUNG, hung_reason(f"worker process {pid}", limit), str(pid))
        self._replace(worker)
        return failed

    def close(self) -> None:
        for worker in self._workers:
            if worker.job is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            else:  # abandoned mid-job: stopped now rather than awaited
                with contextlib.suppress(OSError):
                    worker.process.terminate()
        for worker in self._workers:
            worker.process.join(timeout=30)  # a worker closes its sandbox before it exits
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self._workers = []


def fork_if_possible() -> str:
    """``fork`` where the platform has it, else ``spawn``: for a parent that starts no threads before its
    pool and wants the workers to inherit what it imported and computed (``tasks build``)."""
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def job_deadline(spec: WorkerSpec, job: Any) -> float | None:
    """The ``time.monotonic()`` after which ``job``, starting now, counts as hung; None: no limit."""
    limit = spec.job_limit(job)
    return None if limit is None else time.monotonic() + limit


def until_first_limit(timeout_s: float, deadlines: list[float | None]) -> float:
    """``timeout_s``, shortened so that a wait wakes up when the first running job passes its limit."""
    known = [d for d in deadlines if d is not None]
    return max(0.0, min(timeout_s, min(known) - time.monotonic())) if known else timeout_s


def hung_reason(worker: str, limit: float) -> str:
    """The failed job's reason when ``worker`` (a process, an actor) ran it past its ``limit``."""
    return f"{worker} was still running the job after its limit of {limit:g} s; stopped"


def run_all(executor: Executor, jobs: list[Any]) -> list[Any]:
    """Every job's result (in the order they end), with the executor kept full."""
    pending, results, running = list(jobs), [], 0
    while pending or running:
        while pending and running < executor.capacity:
            executor.submit(pending.pop(0))
            running += 1
        for result in executor.wait(60.0):
            results.append(result)
            running -= 1
    return results


def _terminate(process: Any) -> None:
    """SIGTERM (the worker closes its sandbox on the way out), then SIGKILL after a grace period."""
    process.terminate()
    process.join(timeout=STOP_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join(timeout=5)


def _death(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"worker process {process.pid} was killed by {signal.Signals(-code).name} while running the job"
    return f"worker process {process.pid} exited (code {code}) while running the job"
