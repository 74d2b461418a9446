"""The env's K agents as slots: a name, the version the store keys on, a budget; and a job's store key.

SpawnEnv, the replay tables and ``hrm-spawn collect`` all name agents through these; running a job is
envs/jobs.py. Nothing here imports either of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from hrm_spawn.envs.config import StrictModel
from hrm_spawn.envs.results import Budget
from hrm_spawn.envs.store import OutcomeKey, patch_sha

if TYPE_CHECKING:
    from hrm_spawn.envs.agents.base import Agent, AgentSpec


class BudgetOverrides(StrictModel):
    """Limits applied to every agent on top of its own default budget (unset = keep the default)."""

    max_validations: int | None = Field(None, ge=1)
    max_sandbox_s: float | None = Field(None, gt=0)
    max_turns: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_money_usd: float | None = Field(None, gt=0)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


@dataclass
class AgentSlot:
    """One of the env's K agents: its name, the version the store keys on, its budget."""

    name: str
    version: str  # the store key's version: the agent's version, plus a budget tag when overridden
    budget: Budget = field(default_factory=Budget)
    agent: Agent | None = None  # built lazily: replay needs none
    spec: AgentSpec | None = None  # how to build it in another process (configured agents, overrides)

    def get_agent(self) -> Agent:
        if self.agent is None:
            from hrm_spawn.envs.agents.registry import build_agent, get_agent

            self.agent = build_agent(self.spec) if self.spec is not None else get_agent(self.name)
        return self.agent


def resolve_agents(
    names: Sequence[str], budget: BudgetOverrides | None = None, build: bool = True
) -> list[AgentSlot]:
    """Agent names (``name`` or ``name@version``) -> slots. ``name@version`` needs no agent code (replay)."""
    if not names:
        raise ValueError("agents: the list is empty; give at least one agent name")
    if len(set(names)) != len(names):
        raise ValueError(f"agents: duplicate names in {list(names)}")
    overrides = (budget or BudgetOverrides()).given()
    tag = ""
    if overrides:
        # a different budget gives different outcomes, so it is part of the key
        tag = "+budget." + hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    slots = []
    for entry in names:
        name, _, version = entry.partition("@")
        agent, spec = None, None
        default_budget = Budget()
        if not version or build:
            from hrm_spawn.envs.agents.registry import build_agent, get_spec

            spec = get_spec(name)
            default_budget, agent = spec.budget, build_agent(spec)
            version = version or agent.version
        merged = Budget(**{**default_budget.to_dict(), **overrides})
        slots.append(AgentSlot(name, version + tag, merged, agent, spec))
    return slots


def job_key(task_id: str, slot: AgentSlot, seed: int, start_patch: str) -> OutcomeKey:
    return OutcomeKey(task_id, slot.name, slot.version, seed, patch_sha(start_patch))
