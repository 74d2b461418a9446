"""Where collect jobs run: the executor interface, and the local pool of worker processes.

An :class:`Executor` holds up to ``capacity`` jobs at once on workers that each own one sandbox; the
collector's one loop (``collect._run_round``) submits jobs and waits for :class:`JobDone` records. A
worker that dies (the OOM killer, a SIGKILL, an agent that kills its own process) never hangs the loop:
its job comes back as a ``worker_died`` failure and a fresh worker takes its place. The Ray backend
(:mod:`hrm_spawn.envs.ray_backend`) implements the same interface.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from hrm_spawn.envs.jobs import WORKER_DIED, Job, JobDone, JobRunner, RunnerSpec

READY = "ready"  # a worker's first message: imported and built, so start-up is not counted as job time
START_TIMEOUT_S = 300.0


class Executor(ABC):
    """Runs jobs on workers that each own one sandbox."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many jobs it runs at once."""

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Start ``job`` on an idle worker (the caller keeps at most ``capacity`` in flight)."""

    @abstractmethod
    def wait(self, timeout_s: float) -> list[JobDone]:
        """Jobs that ended (or whose worker died) since the last call; [] after ``timeout_s`` without any."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers (each closes its sandbox); safe to call twice."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _worker_main(conn: Connection, spec: RunnerSpec) -> None:
    """A worker process: run jobs from ``conn`` until it sends None."""
    from hrm_spawn.envs.logs import setup_worker_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the collector, which stops us
    setup_worker_logging()  # the run's handler and its once-per-run warnings, across processes
    runner = JobRunner(spec)
    try:
        conn.send(READY)
        while True:
            job = conn.recv()
            if job is None:
                break
            conn.send(runner.run(job))
    except (EOFError, OSError):  # the collector is gone
        pass
    finally:
        runner.close()


@dataclass
class _Worker:
    process: Any  # a multiprocessing SpawnProcess
    conn: Connection
    job: Job | None = None


class LocalExecutor(Executor):
    """``workers`` processes (spawn context: ``LocalRuntime`` blocks its event loop, so no threads)."""

    def __init__(self, workers: int, spec: RunnerSpec):
        if workers < 1:
            raise ValueError(f"LocalExecutor: workers must be >= 1 (got {workers})")
        self._ctx = mp.get_context("spawn")
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
            raise RuntimeError(f"collect: a worker process did not start ({_death(worker.process)})")

    def _replace(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.process.join(timeout=5)
        fresh = self._start()
        self._workers[self._workers.index(worker)] = fresh
        self._await_ready(fresh)

    def submit(self, job: Job) -> None:
        worker = next((w for w in self._workers if w.job is None), None)
        if worker is None:
            raise RuntimeError(f"LocalExecutor: all {self.capacity} workers are busy")
        if not worker.process.is_alive():  # died while idle
            self._replace(worker)
            worker = next(w for w in self._workers if w.job is None and w.process.is_alive())
        worker.conn.send(job)
        worker.job = job

    def wait(self, timeout_s: float) -> list[JobDone]:
        busy = [w for w in self._workers if w.job is not None]
        if not busy:
            return []
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout_s))
        done = []
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            job = worker.job
            assert job is not None
            try:
                # a result sent just before the process exited is still read here
                result = worker.conn.recv() if worker.conn.poll() else None
            except (EOFError, OSError):
                result = None
            worker.job = None
            if isinstance(result, JobDone):
                done.append(result)
                continue
            worker.process.join(timeout=5)
            done.append(
                JobDone(job.key, None, WORKER_DIED, _death(worker.process), worker=str(worker.process.pid))
            )
            self._replace(worker)
        return done

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=30)  # a worker closes its sandbox before it exits
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self._workers = []


def _death(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"worker process {process.pid} was killed by {signal.Signals(-code).name} while running the job"
    return f"worker process {process.pid} exited (code {code}) while running the job"
