"""The line between an agent's outcome and a failed job (envs/jobs.py: infrastructure_fault), case by case."""

from __future__ import annotations

import pexpect
import pytest

from hrm_spawn.envs.failures import EndpointError
from hrm_spawn.envs.jobs import infrastructure_fault
from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.sandbox import PatchApplyError, SandboxError
from hrm_spawn.envs.store import Outcome


def _raised(exc: BaseException, wrap: type[Exception] | None = None) -> BaseException:
    try:
        try:
            raise exc
        except BaseException as inner:
            if wrap is None:
                raise
            raise wrap("an agent wrapped it") from inner
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pexpect.EOF("End Of File (EOF)"), "sandbox_died"),
        (_raised(pexpect.EOF("eof"), RuntimeError), "sandbox_died"),  # found through the cause
        (ConnectionRefusedError(111, "refused"), "transport"),
        (BrokenPipeError(32, "broken pipe"), "transport"),
        (EndpointError("http://127.0.0.1:9/v1 unreachable"), "endpoint"),
        (_raised(EndpointError("down"), ValueError), "endpoint"),
        (SandboxError("could not start the local deployment"), "sandbox"),
        (PatchApplyError("the agent's own patch does not apply"), None),  # the agent's doing
        (ValueError("the agent's own bug"), None),
        (FileNotFoundError("repo/ils.py"), None),
    ],
)
def test_exceptions(exc: BaseException, kind: str | None) -> None:
    fault = infrastructure_fault(exc=exc)
    assert (fault.kind if fault is not None else None) == kind


def _outcome(status: str = "ok", reason: str = "", evaluation: Evaluation | None = None) -> Outcome:
    result = AgentResult(patch="", status=status, cost=Cost(), reason=reason, agent="llm")
    return Outcome(result, evaluation or Evaluation(0, 1, 2, 2))


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (_outcome(), None),
        (_outcome("error", "endpoint unreachable: http://127.0.0.1:9/v1 (Connection error.)"), "endpoint"),
        (_outcome("timeout", "the endpoint http://x/v1 did not answer within 120 s"), "endpoint"),
        (_outcome("error", "the endpoint answered HTTP 503: overloaded"), "endpoint"),
        (_outcome("error", "the endpoint answered HTTP 429: rate limited"), "endpoint"),
        (_outcome("error", "the endpoint answered HTTP 400: context too long"), None),  # the agent's prompt
        (_outcome("error", "EOF: End Of File (EOF). Exception style platform."), "sandbox_died"),
        (_outcome("error", "ServerDisconnectedError: Server disconnected"), "transport"),
        (_outcome("error", "FileNotFoundError: [Errno 2] .../repo/ils.py"), None),  # its own crash
        (_outcome("timeout", "AgentTimeout: sandbox budget 20 s spent"), None),  # its own budget
        (_outcome("budget_exhausted", "max_validations"), None),
        (_outcome(evaluation=Evaluation(0, 1, 0, 2, error="test run timed out")), "evaluation"),
        (_outcome(evaluation=Evaluation(0, 1, 0, 2, applied=False, error="patch does not apply")), None),
    ],
)
def test_outcomes(outcome: Outcome, kind: str | None) -> None:
    fault = infrastructure_fault(outcome)
    assert (fault.kind if fault is not None else None) == kind
