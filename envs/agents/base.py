"""The agent contract: what the policy can spawn, and how a built-in or plug-in agent is described.

An agent receives a sandbox prepared for the task (reset to the buggy state), applies ``start_patch``
itself (delegation: continue from another agent's candidate) and returns an ``AgentResult`` whose patch
is a diff against the buggy repository that includes ``start_patch``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hrm_spawn.envs.results import AgentResult, Budget

if TYPE_CHECKING:  # the sandbox and task modules are only needed for type hints
    from hrm_spawn.envs.sandbox import Sandbox
    from hrm_spawn.envs.tasks import TaskInstance


@runtime_checkable
class Agent(Protocol):
    """Anything with a name, a version and ``run``; the outcome store keys on (name, version).

    The version is the agent's identity: whatever changes its behaviour must change it, or the store hands
    one configuration's outcomes to another. An agent may define ``behaviour() -> dict`` (the settings that
    change what it does) and fold it into its own version, as the LLM agent does; for any other agent the
    registry adds a hash of its kwargs and budget when they differ from the registered defaults.
    """

    name: str
    version: str

    def run(
        self, sandbox: Sandbox, task: TaskInstance, start_patch: str, budget: Budget, seed: int
    ) -> AgentResult: ...


@dataclass
class AgentSpec:
    """A named agent: the class to build (``module:Class``), its keyword arguments, its default budget."""

    name: str
    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    description: str = ""

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any], where: str = "agent spec") -> AgentSpec:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: agent {name!r} must be a mapping, got {type(data).__name__}")
        if "name" in data and data["name"] != name:
            raise ValueError(f"{where}: agent {name!r} has a different name {data['name']!r} inside")
        unknown = set(data) - {"name", "cls", "kwargs", "budget", "description"}
        if unknown:
            raise ValueError(f"{where}: agent {name!r} has unknown keys {sorted(unknown)}")
        if not isinstance(data.get("cls"), str) or ":" not in data["cls"]:
            raise ValueError(f"{where}: agent {name!r} needs cls: 'module:Class', got {data.get('cls')!r}")
        budget = data.get("budget") or {}
        budget_keys = set(Budget.__dataclass_fields__)
        if not isinstance(budget, dict) or set(budget) - budget_keys:
            raise ValueError(
                f"{where}: agent {name!r} budget must be a mapping with keys from {sorted(budget_keys)}"
            )
        kwargs = data.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"{where}: agent {name!r} kwargs must be a mapping")
        return cls(name, data["cls"], dict(kwargs), Budget(**budget), str(data.get("description", "")))

    def to_dict(self) -> dict[str, Any]:
        budget = {k: v for k, v in self.budget.to_dict().items() if v is not None}
        return {"cls": self.cls, "kwargs": self.kwargs, "budget": budget, "description": self.description}


def stable_hash(data: Any, length: int = 10) -> str:
    """A hash of JSON-able ``data`` that does not depend on key order, process or machine."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
