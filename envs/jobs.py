"""One collect job, what a worker does with it, and the line between an agent's outcome and a failed job.

**The line** (:func:`infrastructure_fault`, the only place it is drawn): a run is an *outcome* when the
agent had a working sandbox, a reachable model endpoint and a finished hidden evaluation, whatever it
did with them: a wrong or empty patch, its own budget spent (status ``budget_exhausted``/``timeout``),
its own crash (an exception out of ``Agent.run`` that is not a fault of the machinery, or status
``error`` with the agent's own reason). Everything else is a **failed job** with a kind and a reason:

- ``sandbox_died``: the shell, runtime or deployment died (``pexpect.EOF``, :class:`SandboxDiedError`);
- ``sandbox``: the sandbox refused an operation (:class:`SandboxError`: could not start, prepare or run;
  a patch that does not apply is not one: that is the agent's own);
- ``transport``: a remote runtime dropped the connection;
- ``endpoint``: the model endpoint was unreachable, timed out, refused the key or answered 429/5xx
  (an LLM agent reports these as status ``error``/``timeout`` with an ``endpoint`` reason today, or raises
  :class:`EndpointError`);
- ``evaluation``: the hidden test run timed out or was killed, so its verdict says nothing;
- ``worker_died``: the worker process or Ray actor running the job died (decided by the executor);
- ``worker_hung``: the worker process or Ray actor was still running the job past :meth:`RunnerSpec.job_limit`
  (the agent's wall-clock safety budget, the evaluation and a margin) and was stopped (decided by the executor);
- any other exception while preparing the task or evaluating (named by its class): a failed job too.

A failed job is never stored as an outcome, never skipped by a resume, and its verdict is never reused.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agent_slots import AgentSlot
from hrm_spawn.envs.executors import WORKER_DIED as WORKER_DIED  # the executor decides these two kinds
from hrm_spawn.envs.executors import WORKER_HUNG as WORKER_HUNG
from hrm_spawn.envs.failures import (
    EndpointError,
    InfrastructureError,
    SandboxDiedError,
    TransportError,
    evaluation_fault,
    fault_named,
    is_infrastructure_failure,
)
from hrm_spawn.envs.results import AgentResult, Budget, Cost
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore, StoreError

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import Sandbox

# The hung-job limit (RunnerSpec.job_limit): the agent's own time at least this (the repair agents'
# default wall-clock safety limit and their seconds per validation), plus what a job does around it.
MIN_AGENT_S = 600.0
AGENT_S_PER_VALIDATION = 10.0
HUNG_MARGIN_S = 300.0  # sandbox start and task preparation on a loaded machine


class SandboxFault(InfrastructureError):
    """The sandbox refused an operation (could not start, prepare or run): not the agent's doing."""

    kind = "sandbox"


# Faults a fresh sandbox cures: the worker recovers its sandbox and runs the job once more.
RECOVERABLE = frozenset({SandboxDiedError.kind, TransportError.kind})

# The reasons the LLM agent gives for an endpoint fault (envs/agents/llm.py: classify_error).
_ENDPOINT_REASON = re.compile(
    r"endpoint unreachable|the endpoint .* did not answer within|the endpoint refused the key"
    r"|the endpoint answered HTTP (429|401|403|5\d\d)"
)


def infrastructure_fault(
    outcome: Outcome | None = None, exc: BaseException | None = None
) -> InfrastructureError | None:
    """The line: the fault of the machinery in what a run raised (``exc``) or returned, or None for an outcome.

    ``exc`` is an exception out of the job; an exception out of ``Agent.run`` that this returns None for
    is the agent's own crash, stored as status ``error``.
    """
    if exc is not None:
        return _exception_fault(exc)
    if outcome is None:
        return None
    result = outcome.result
    if result.status in ("error", "timeout"):
        if _ENDPOINT_REASON.search(result.reason or ""):
            return EndpointError(f"agent {result.agent or '?'} reported: {result.reason}")
        fault = fault_named((result.reason or "").split(":", 1)[0].strip())
        if fault is not None:
            return fault(f"agent {result.agent or '?'} reported: {result.reason}")
    return evaluation_fault(outcome.evaluation)


def _exception_fault(exc: BaseException) -> InfrastructureError | None:
    from hrm_spawn.envs.sandbox import PatchApplyError, SandboxError

    text = f"{type(exc).__name__}: {exc}"[:1000]
    chain = _chain(exc)
    for link in chain:
        if isinstance(link, InfrastructureError):
            return link if link is exc else _of_kind(link, text)
    if is_infrastructure_failure(exc):
        names = [type(link).__name__ for link in chain]
        cls = next((fault_named(n) for n in names if fault_named(n)), TransportError)
        return cls(text)
    if isinstance(exc, SandboxError) and not isinstance(exc, PatchApplyError):
        return SandboxFault(text)
    return None


def _of_kind(fault: InfrastructureError, text: str) -> InfrastructureError:
    """A fault of ``fault``'s kind that reads ``text`` (the outer exception, which names the step)."""
    try:
        return type(fault)(text)
    except TypeError:  # a subclass with its own constructor
        made = InfrastructureError(text)
        made.kind = fault.kind
        return made


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, outermost first."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in links):
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def run_job(
    sandbox: Sandbox,
    task: Any,
    slot: Any,
    seed: int,
    start_patch: str,
    store: OutcomeStore | None = None,
) -> Outcome:
    """One agent run from ``start_patch`` plus the hidden evaluation of its candidate; an outcome or a raise.

    Raises an :class:`InfrastructureError` whenever :func:`infrastructure_fault` says the run is not an
    outcome, so no caller can store one by mistake. A candidate whose evaluation ``store`` already holds
    is not judged again (the tests are deterministic): the verdict is copied, with ``duration_s`` 0.
    """
    try:
        if getattr(sandbox, "task", None) is None or sandbox.task.instance_id != task.instance_id:
            sandbox.prepare(task)
        sandbox.reset()
        result = _run_agent(sandbox, task, slot, seed, start_patch)
        evaluation = store.find_evaluation(task.instance_id, result.patch) if store is not None else None
        if evaluation is not None:
            evaluation.duration_s = 0.0
        else:
            evaluation = sandbox.evaluate(result.patch)
    except Exception as exc:
        fault = infrastructure_fault(exc=exc)
        if fault is not None and fault is not exc:
            raise fault from exc
        raise
    outcome = Outcome(result, evaluation, time.time())
    fault = infrastructure_fault(outcome)
    if fault is not None:
        raise fault
    return outcome


def _run_agent(sandbox: Sandbox, task: Any, slot: Any, seed: int, start_patch: str) -> AgentResult:
    start = time.perf_counter()
    try:
        result = slot.get_agent().run(sandbox, task, start_patch, slot.budget, seed)
    except Exception as exc:
        if infrastructure_fault(exc=exc) is not None:
            raise
        # the agent's own crash is its outcome: what it was handed, status error, the reason
        result = AgentResult(
            patch=start_patch,
            status="error",
            cost=Cost(sandbox_s=time.perf_counter() - start),
            reason=f"{type(exc).__name__}: {exc}"[:1000],
        )
    result.agent, result.version, result.seed = slot.name, slot.version, seed
    return result


# -- jobs and the worker that runs them ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One (task, agent, seed, start patch) run; plain data so it crosses processes and Ray nodes."""

    task: dict[str, Any]  # the TaskInstance as JSON
    agent: str
    seed: int
    start_patch: str
    key: OutcomeKey
    attempt: int = 1  # 2 when the collector runs it again after its worker died

    def again(self) -> Job:
        return Job(self.task, self.agent, self.seed, self.start_patch, self.key, self.attempt + 1)


@dataclass
class JobDone:
    """A job's end: its outcome (to store), or the failure kind and reason; ``attempts`` tries it took."""

    key: OutcomeKey
    outcome: Outcome | None
    kind: str = ""
    reason: str = ""
    attempts: int = 1
    worker: str = ""


@dataclass
class RunnerSpec:
    """What every worker needs to build its :class:`JobRunner` (plain data: pickled to processes and actors)."""

    store_path: str
    sandbox_config: dict[str, Any]
    # (name, version, budget, the agent's spec as a dict or None): configured agents rebuild from the spec
    slots: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]]
    job_limit_s: float | None = None  # a fixed hung-job limit; None: derived per agent (job_limit)

    def build(self) -> JobRunner:
        return JobRunner(self)

    def failed(self, job: Job, kind: str, reason: str, worker: str) -> JobDone:
        return JobDone(job.key, None, kind, reason, worker=worker)

    def job_limit(self, job: Job) -> float:
        """Seconds after which a job's worker counts as hung: the agent's wall-clock safety budget (the
        larger of its wall and sandbox seconds and 10 s per validation, at least 600 s), plus two test runs
        (the task's preparation and the hidden evaluation), plus a 300 s margin."""
        if self.job_limit_s is not None:
            return self.job_limit_s
        budget = next(b for name, _, b, _ in self.slots if name == job.agent)
        agent_s = max(
            MIN_AGENT_S,
            budget.get("max_wall_s") or 0.0,
            budget.get("max_sandbox_s") or 0.0,
            AGENT_S_PER_VALIDATION * (budget.get("max_validations") or 0),
        )
        test_s = float(self.sandbox_config.get("test_timeout_s") or 300.0)
        return agent_s + 2 * test_s + HUNG_MARGIN_S


class JobRunner:
    """A worker's state: one sandbox, the agents, the store (read only, for evaluation reuse).

    A job whose sandbox died or lost its transport is run once more here on a fresh sandbox (the task is
    prepared again) before it is reported failed. The collector, not the worker, writes the store.
    """

    def __init__(self, spec: RunnerSpec):
        from hrm_spawn.envs.agents.base import AgentSpec
        from hrm_spawn.envs.sandbox import SandboxConfig

        self.spec = spec
        self.sandbox_config = SandboxConfig.model_validate(spec.sandbox_config)
        self.slots = {
            n: AgentSlot(n, v, Budget(**b), spec=AgentSpec.from_dict(n, a) if a else None)
            for n, v, b, a in spec.slots
        }
        self.sandbox: Sandbox | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._store: OutcomeStore | None = None

    def run(self, job: Job) -> JobDone:
        from hrm_spawn.envs.tasks import TaskInstance

        task = TaskInstance.model_validate(job.task)
        for attempt in (1, 2):
            try:
                outcome = run_job(
                    self._sandbox(), task, self.slots[job.agent], job.seed, job.start_patch, self._reuse()
                )
                return JobDone(job.key, outcome, attempts=attempt, worker=self.name)
            except Exception as exc:
                fault = infrastructure_fault(exc=exc)
                kind = fault.kind if fault is not None else type(exc).__name__
                reason = f"{type(exc).__name__}: {exc}"[:2000]
                self._drop_sandbox()  # whatever broke, the next job starts on a fresh sandbox
                if kind not in RECOVERABLE or attempt == 2:
                    return JobDone(job.key, None, kind, reason, attempts=attempt, worker=self.name)
        raise AssertionError("unreachable")

    def _sandbox(self) -> Sandbox:
        if self.sandbox is None:
            from hrm_spawn.envs.sandbox import Sandbox

            self.sandbox = Sandbox(self.sandbox_config)
        return self.sandbox

    def _drop_sandbox(self) -> None:
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                self.sandbox.close()
        self.sandbox = None

    def _reuse(self) -> OutcomeStore | None:
        """The store for evaluation reuse, when this node can read it (on another machine it may not)."""
        if self._store is None:
            with contextlib.suppress(StoreError, OSError):
                self._store = OutcomeStore(self.spec.store_path, readonly=True)
        return self._store

    def close(self) -> None:
        self._drop_sandbox()
        if self._store is not None:
            self._store.close()
