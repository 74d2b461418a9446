"""The records that cross module boundaries: test reports, evaluations, costs, agent results.

They are plain dataclasses with ``to_dict``/``from_dict`` so the outcome store can keep them as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

PASSED = "PASSED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
ERROR = "ERROR"
XFAIL = "XFAIL"

AgentStatus = Literal["ok", "budget_exhausted", "timeout", "error"]


@dataclass
class TestReport:
    """Per-test outcome of one test run, parsed with SWE-smith's log parser."""

    __test__ = False  # not a pytest class

    status: dict[str, str] = field(
        default_factory=dict
    )  # test id -> PASSED / FAILED / ERROR / SKIPPED / XFAIL
    duration_s: float = 0.0
    timed_out: bool = False
    log_tail: str = ""  # the end of the raw output, for failure messages and tokens

    def passed(self, test_id: str) -> bool:
        return self.status.get(test_id) in (PASSED, XFAIL)

    def count_passed(self, test_ids: list[str]) -> int:
        return sum(self.passed(t) for t in test_ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestReport:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Evaluation:
    """A candidate judged as SWE-smith does: FAIL_TO_PASS must pass, PASS_TO_PASS must keep passing."""

    f2p_passed: int
    f2p_total: int
    p2p_passed: int
    p2p_total: int
    applied: bool = True
    error: str | None = None
    duration_s: float = 0.0
    tests: dict[str, str] = field(default_factory=dict)

    @property
    def f2p_pass_fraction(self) -> float:
        return self.f2p_passed / self.f2p_total if self.f2p_total else 1.0

    @property
    def p2p_pass_fraction(self) -> float:
        return self.p2p_passed / self.p2p_total if self.p2p_total else 1.0

    @property
    def pass_rate(self) -> float:
        """The environment's default reward for a submitted candidate."""
        if not self.applied:
            return 0.0
        return self.f2p_pass_fraction * self.p2p_pass_fraction

    @property
    def resolved(self) -> bool:
        return self.applied and self.f2p_passed == self.f2p_total and self.p2p_passed == self.p2p_total

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            f2p_pass_fraction=self.f2p_pass_fraction,
            p2p_pass_fraction=self.p2p_pass_fraction,
            pass_rate=self.pass_rate,
            resolved=self.resolved,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Cost:
    """What an attempt spent, measured (never guessed)."""

    sandbox_s: float = 0.0  # wall seconds of commands inside the sandbox
    test_runs: int = 0  # full or partial test-suite runs
    validations: int = 0  # candidate patches validated
    tokens_in: int = 0
    tokens_out: int = 0
    money_usd: float = 0.0
    wall_s: float = 0.0  # wall seconds of the whole run (model calls included); 0 where not measured
    steps: int = 0  # model calls of an LLM agent; 0 for agents without a model

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def in_unit(self, unit: str, test_run_s: float = 1.0) -> float:
        """This cost in a cost unit (``envs.replay.COST_UNIT_LABELS``): ``test_runs`` (sandbox seconds over
        one full test run of the task, ``test_run_s``: measured, so it follows the machine's load),
        ``test_executions`` (the test-suite executions the run made, full or partial, as counted: the same
        on every machine), ``usd``, or ``tokens`` (in + out)."""
        if unit == "test_runs":
            return self.sandbox_s / (test_run_s if test_run_s > 0 else 1.0)
        if unit == "test_executions":
            return float(self.test_runs)
        if unit == "usd":
            return self.money_usd
        if unit == "tokens":
            return float(self.tokens_in + self.tokens_out)
        raise ValueError(f"unknown cost unit {unit!r} (test_runs, test_executions, usd, tokens)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Budget:
    """Limits for one agent run; ``None`` means unlimited."""

    max_validations: int | None = None
    max_sandbox_s: float | None = None
    max_turns: int | None = None
    max_tokens: int | None = None
    max_money_usd: float | None = None
    max_wall_s: float | None = None

    def exhausted_by(self, cost: Cost, turns: int = 0) -> bool:
        checks = [
            (self.max_wall_s, cost.wall_s),
            (self.max_validations, cost.validations),
            (self.max_sandbox_s, cost.sandbox_s),
            (self.max_turns, turns),
            (self.max_tokens, cost.tokens_in + cost.tokens_out),
            (self.max_money_usd, cost.money_usd),
        ]
        return any(limit is not None and used >= limit for limit, used in checks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AgentResult:
    """What one agent run returns: a candidate patch against the buggy repository, and what it cost."""

    patch: str
    status: AgentStatus
    cost: Cost
    visible: TestReport | None = None  # the last test report the agent saw for its candidate
    visible_pass_rate: float = 0.0  # the agent's own estimate from the tests it ran
    reason: str = ""  # why, when status is not "ok"
    trajectory: list[str] = field(default_factory=list)  # short human-readable log
    agent: str = ""
    version: str = ""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost"] = self.cost.to_dict()
        data["visible"] = self.visible.to_dict() if self.visible else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentResult:
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kwargs["cost"] = Cost.from_dict(data.get("cost") or {})
        kwargs["visible"] = TestReport.from_dict(data["visible"]) if data.get("visible") else None
        return cls(**kwargs)
