"""Where an agent's outcome ends and a fault of the machinery begins: the one line, drawn here.

An **outcome** is what an agent did with a working sandbox: a patch (possibly empty, possibly wrong),
its own budget spent, its own bug. It is stored and replayed forever, so it must be true.

An **infrastructure failure** is anything that says nothing about the agent: the sandbox or its shell
died, a remote runtime dropped the connection, the model endpoint was unreachable or answered with an
error, the hidden evaluation timed out or was killed. Such a job is *failed*, with a reason: it is never
written as an outcome, a resume runs it again, and no other job reuses its verdict.

Code that detects such a fault raises a subclass of :class:`InfrastructureError` (or lets a transport
error through); :func:`is_infrastructure_failure` is the one test every caller uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrm_spawn.envs.results import Evaluation


class InfrastructureError(RuntimeError):
    """A fault of the machinery around an agent, never the agent's outcome."""

    kind = "infrastructure"


class SandboxDiedError(InfrastructureError):
    """The sandbox's shell, runtime or deployment died or stopped answering."""

    kind = "sandbox_died"


class TransportError(InfrastructureError):
    """A remote runtime could not be reached or dropped the connection."""

    kind = "transport"


class EndpointError(InfrastructureError):
    """A model endpoint was unreachable, refused the request or answered with a server error."""

    kind = "endpoint"


class EvaluationError(InfrastructureError):
    """The hidden evaluation of a candidate did not finish (timed out, killed, unreadable output)."""

    kind = "evaluation"


# Exceptions from libraries below us that can only mean a broken transport or runtime, and the fault each
# one is. Named by module and class so this module imports nothing heavy (aiohttp, pexpect, swerex).
_LIBRARY_FAULTS: dict[tuple[str, str], type[InfrastructureError]] = {
    ("aiohttp.client_exceptions", "ServerDisconnectedError"): TransportError,
    ("aiohttp.client_exceptions", "ClientConnectorError"): TransportError,
    ("aiohttp.client_exceptions", "ClientOSError"): TransportError,
    ("aiohttp.client_exceptions", "ServerTimeoutError"): TransportError,
    ("pexpect.exceptions", "EOF"): SandboxDiedError,
    ("swerex.exceptions", "SessionDoesNotExistError"): SandboxDiedError,
    ("swerex.exceptions", "DeploymentNotStartedError"): SandboxDiedError,
    ("swerex.exceptions", "DockerPullError"): TransportError,  # the image could not be fetched
}
# By class name alone: an agent that catches everything reports "<ExceptionClass>: message", and these
# classes are never its own doing.
_FAULT_BY_NAME: dict[str, type[InfrastructureError]] = {
    **{name: fault for (_, name), fault in _LIBRARY_FAULTS.items()},
    **{cls.__name__: cls for cls in (SandboxDiedError, TransportError, EndpointError, EvaluationError)},
    **{
        cls.__name__: TransportError
        for cls in (ConnectionError, ConnectionRefusedError, ConnectionResetError)
    },
    BrokenPipeError.__name__: TransportError,
    "APIConnectionError": EndpointError,  # openai's, as litellm raises them
    "APITimeoutError": EndpointError,
}


def fault_named(name: str) -> type[InfrastructureError] | None:
    """The fault an exception class called ``name`` stands for, or None when it may be the agent's own."""
    return _FAULT_BY_NAME.get(name)


def is_infrastructure_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or what it was raised from) is a fault of the machinery, not of the agent."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InfrastructureError | ConnectionError | BrokenPipeError):
            return True
        for cls in type(current).__mro__:
            if (cls.__module__, cls.__name__) in _LIBRARY_FAULTS:
                return True
        current = current.__cause__ or current.__context__
    return False


def evaluation_fault(evaluation: Evaluation) -> EvaluationError | None:
    """A hidden evaluation whose test run timed out or was killed: its verdict says nothing."""
    if evaluation.applied and evaluation.error and "timed out" in evaluation.error:
        return EvaluationError(f"the hidden evaluation did not finish: {evaluation.error}")
    return None


def failure_kind(exc: BaseException) -> str:
    """A short name for a failed job's reason column: ``sandbox_died``, ``endpoint``, ``transport``..."""
    return getattr(exc, "kind", None) or type(exc).__name__
