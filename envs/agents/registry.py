"""Find agents by name: built-in specs, the ``hrm_spawn.agents`` entry-point group, or ``module:Class``.

A third-party package registers ``[project.entry-points."hrm_spawn.agents"] my-agent = "pkg.mod:MyAgent"``;
the object may be an Agent class, a factory returning an agent, or an ``AgentSpec``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import yaml

from hrm_spawn.envs.agents.base import Agent, AgentSpec
from hrm_spawn.envs.plugins import load_object
from hrm_spawn.envs.results import Budget

ENTRY_POINT_GROUP = "hrm_spawn.agents"
_REPAIR = "hrm_spawn.envs.agents.repair:RepairAgent"


def _spec(
    name: str, families: list[str], lines: int, batch: int, budget: Budget, description: str
) -> AgentSpec:
    kwargs = {"families": families, "max_lines": lines, "batch_size": batch, "depth": 2}
    return AgentSpec(name, _REPAIR, kwargs, budget, description)


# Different families and budgets, so which agent to spawn matters; configs/agents/default.yaml mirrors these.
AGENT_SPECS: dict[str, AgentSpec] = {
    "op-flip": _spec(
        "op-flip",
        ["operators"],
        12,
        64,
        Budget(max_validations=60, max_sandbox_s=60.0),
        "flips arithmetic, comparison and boolean operators",
    ),
    "swap": _spec(
        "swap",
        ["operands", "statements"],
        10,
        64,
        Budget(max_validations=80, max_sandbox_s=80.0),
        "swaps operands and reorders statements",
    ),
    "const": _spec(
        "const",
        ["constants"],
        12,
        64,
        Budget(max_validations=60, max_sandbox_s=60.0),
        "changes constants: +-1, 0/1, True/False, off-by-one",
    ),
    "cond": _spec(
        "cond",
        ["control"],
        12,
        64,
        Budget(max_validations=40, max_sandbox_s=40.0),
        "inverts if/else and negates conditions",
    ),
    "broad": AgentSpec(
        "broad",
        _REPAIR,
        {
            "families": ["operators", "operands", "constants", "control"],
            "max_lines": 30,
            "batch_size": 100,
            "depth": 2,
            "pair_pool": 8,
        },
        Budget(max_validations=200, max_sandbox_s=150.0),
        "every expression-level family, deeper localisation, pairs of edits: strong and expensive "
        "(statement reordering is left to swap)",
    ),
    # Restores removed code (statements, methods, bases) from ingredients elsewhere in the repository: the
    # only built-in agent for SWE-smith's removal kinds; slower per candidate (class edits import fresh).
    "surgery": AgentSpec(
        "surgery",
        "hrm_spawn.envs.agents.surgery:SurgeryAgent",
        {"max_functions": 4, "batch_size": 32, "depth": 2},
        Budget(max_validations=120, max_sandbox_s=240.0),
        "grafts statements, guards, loops, wrappers, methods and bases found elsewhere in the repository "
        "into the blamed code (removed-code bugs): slow and expensive",
    ),
}


class AgentNotFoundError(LookupError):
    """No built-in, entry-point or importable agent has this name."""


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_agents() -> list[str]:
    """Built-in names first, then entry-point names (sorted)."""
    extra = sorted(set(_entry_points()) - set(AGENT_SPECS))
    return list(AGENT_SPECS) + extra


def import_object(path: str) -> Any:
    """``package.module:Attr.sub`` (or ``file.py:Attr``) -> the object; a clear error naming the path."""
    return load_object(path, "agent path", AgentNotFoundError)


def _build(obj: Any, name: str, kwargs: dict[str, Any]) -> Agent:
    if isinstance(obj, AgentSpec):
        return _build(import_object(obj.cls), obj.name, {**obj.kwargs, **kwargs})
    agent = obj(**kwargs) if callable(obj) else obj
    if not isinstance(agent, Agent):
        raise TypeError(f"agent {name!r}: {obj!r} did not give an Agent (needs name, version and run())")
    if not getattr(agent, "name", ""):
        agent.name = name
    return agent


def get_spec(name_or_path: str) -> AgentSpec:
    """The spec (class path, kwargs, default budget) for a built-in, entry-point or ``module:Class`` agent."""
    if name_or_path in AGENT_SPECS:
        return AGENT_SPECS[name_or_path]
    eps = _entry_points()
    if name_or_path in eps:
        obj = eps[name_or_path].load()
        if isinstance(obj, AgentSpec):
            return obj
        return AgentSpec(name_or_path, eps[name_or_path].value, {}, getattr(obj, "default_budget", Budget()))
    if ":" in name_or_path:
        obj = import_object(name_or_path)
        return AgentSpec(name_or_path, name_or_path, {}, getattr(obj, "default_budget", Budget()))
    raise AgentNotFoundError(
        f"unknown agent {name_or_path!r}; known agents: {', '.join(list_agents())} "
        f"(or give a 'module:Class' path, or register one in the entry-point group {ENTRY_POINT_GROUP!r})"
    )


def get_agent(name_or_path: str, **kwargs: Any) -> Agent:
    """Build an agent by built-in name, entry-point name or ``module:Class`` path; kwargs override the spec's."""
    if name_or_path in AGENT_SPECS:
        spec = AGENT_SPECS[name_or_path]
        agent = _build(import_object(spec.cls), spec.name, {**spec.kwargs, **kwargs})
        agent.name = spec.name  # the store keys on the registered name, not the class default
        return agent
    eps = _entry_points()
    if name_or_path in eps:
        return _build(eps[name_or_path].load(), name_or_path, kwargs)
    if ":" in name_or_path:
        return _build(import_object(name_or_path), name_or_path, kwargs)
    get_spec(name_or_path)  # raises the error that lists the known names
    raise AssertionError("unreachable")


def load_agent_specs(path: str | Path) -> dict[str, AgentSpec]:
    """Read ``agents: {name: {cls, kwargs, budget, description}}`` from a YAML file."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    agents = data.get("agents") if isinstance(data, dict) else None
    if not isinstance(agents, dict):
        raise ValueError(f"{path}: expected a top-level 'agents' mapping of name -> spec")
    return {name: AgentSpec.from_dict(name, spec, where=str(path)) for name, spec in agents.items()}
