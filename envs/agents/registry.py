"""Find agents by name: configured specs, built-in specs, the ``hrm_spawn.agents`` entry-point group, or
``module:Class``.

A configured agent is an entry of an agents YAML file (``agents: {name: {cls, kwargs, budget}}``):
the shipped presets ``configs/agents/*.yaml``, the files named in ``$HRM_SPAWN_AGENTS`` (read again in
every process, so worker processes see them too) and specs registered in this process. A third-party
package registers ``[project.entry-points."hrm_spawn.agents"] my-agent = "pkg.mod:MyAgent"``; the object
may be an Agent class, a factory returning an agent, or an ``AgentSpec``.

Every agent built here carries its identity as its ``version``: the class's version, plus a hash of the
kwargs and budget where they differ from the registered defaults (see ``identity``).
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Iterable
from dataclasses import replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hrm_spawn.envs.agents.base import Agent, AgentSpec, stable_hash
from hrm_spawn.envs.config import CONFIG_DIR, ConfigError, apply_override, read_yaml, resolve_config_path
from hrm_spawn.envs.plugins import load_object
from hrm_spawn.envs.results import Budget

ENTRY_POINT_GROUP = "hrm_spawn.agents"
AGENTS_ENV = "HRM_SPAWN_AGENTS"  # agent YAML files (os.pathsep-separated) every process reads
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
    """No configured, built-in, entry-point or importable agent has this name."""


_REGISTERED: dict[str, AgentSpec] = {}


def register_agent_specs(specs: dict[str, AgentSpec] | Iterable[AgentSpec]) -> None:
    """Make configured specs known by name in this process (they win over files and built-ins).

    Other processes do not see them: a worker that must build the agent gets the spec itself (an
    ``AgentSlot`` carries it) or reads the same file through ``$HRM_SPAWN_AGENTS``.
    """
    for spec in specs.values() if isinstance(specs, dict) else specs:
        _REGISTERED[spec.name] = spec


def unregister_agent_specs(names: Iterable[str] | None = None) -> None:
    """Forget registered specs (all when ``names`` is None)."""
    for name in list(_REGISTERED) if names is None else names:
        _REGISTERED.pop(name, None)


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _env_files() -> list[Path]:
    return [Path(p) for p in os.environ.get(AGENTS_ENV, "").split(os.pathsep) if p.strip()]


def _merge_files(paths: Iterable[Path]) -> dict[str, AgentSpec]:
    """Specs of several files; one name with two different specs is an error naming both files."""
    merged: dict[str, tuple[AgentSpec, Path]] = {}
    for path in paths:
        for name, spec in load_agent_specs(path).items():
            if name in merged and merged[name][0].to_dict() != spec.to_dict():
                raise ValueError(f"agent {name!r} is defined differently in {merged[name][1]} and {path}")
            merged[name] = (spec, path)
    return {name: spec for name, (spec, _) in merged.items()}


def preset_specs() -> dict[str, AgentSpec]:
    """The agents of the shipped presets ``configs/agents/*.yaml``."""
    return _merge_files(sorted((CONFIG_DIR / "agents").glob("*.yaml")))


def configured_specs() -> dict[str, AgentSpec]:
    """Every configured agent by name: registered here, then ``$HRM_SPAWN_AGENTS`` files, then presets."""
    env_files = _env_files()
    for path in env_files:
        if not path.is_file():
            raise AgentNotFoundError(f"${AGENTS_ENV} names {path}, which is not a file")
    return {**preset_specs(), **_merge_files(env_files), **_REGISTERED}


def list_agents() -> list[str]:
    """Built-in names first, then configured and entry-point names (sorted)."""
    extra = sorted((set(configured_specs()) | set(_entry_points())) - set(AGENT_SPECS))
    return list(AGENT_SPECS) + extra


def import_object(path: str) -> Any:
    """``package.module:Attr.sub`` (or ``file.py:Attr``) -> the object; a clear error naming the path."""
    return load_object(path, "agent path", AgentNotFoundError)


def _build(obj: Any, name: str, kwargs: dict[str, Any]) -> Agent:
    if isinstance(obj, AgentSpec):
        return _build(import_object(obj.cls), obj.name, {**obj.kwargs, **kwargs})
    if not callable(obj):
        agent = obj
    else:
        _check_kwarg_names(obj, name, kwargs)
        try:
            agent = obj(**kwargs)
        except ValidationError as exc:
            raise ValueError(_kwargs_error(obj, name, exc)) from None
    if not isinstance(agent, Agent):
        raise TypeError(f"agent {name!r}: {obj!r} did not give an Agent (needs name, version and run())")
    return agent


def _kwargs_model(obj: Any) -> type[BaseModel] | None:
    """The pydantic model an agent class validates its kwargs with (``config: LLMConfig | dict``)."""
    from hrm_spawn.envs.suggest import _model_of

    try:
        hints = typing.get_type_hints(obj.__init__ if isinstance(obj, type) else obj)
    except Exception:  # noqa: BLE001 (unresolvable annotations: no hint, the error still names the key)
        return None
    return next((m for m in map(_model_of, hints.values()) if m is not None), None)


def _check_kwarg_names(obj: Any, name: str, kwargs: dict[str, Any]) -> None:
    """A kwarg the callable does not take is an error naming the agent, the key and the closest name
    (rather than ``__init__() got an unexpected keyword argument``)."""
    from hrm_spawn.envs.suggest import did_you_mean

    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return  # **kwargs: the callable (or its pydantic model) judges the names
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in names:
            raise ValueError(
                f"agent {name!r}: unknown kwarg {key!r}{did_you_mean(key, names)}; "
                f"{getattr(obj, '__name__', obj)} takes {', '.join(names)}"
            )


def _kwargs_error(obj: Any, name: str, exc: ValidationError) -> str:
    """One line per bad kwarg, naming the agent and the key (and, for an unknown one, the closest)."""
    from hrm_spawn.envs.suggest import did_you_mean

    model = _kwargs_model(obj)
    fields = list(model.model_fields) if model else []
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<kwargs>"
        if err["type"] == "extra_forbidden":
            lines.append(f"agent {name!r}: unknown kwarg {key!r}{did_you_mean(key, fields)}")
        else:
            lines.append(f"agent {name!r}: kwarg {key!r}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def get_spec(name_or_path: str) -> AgentSpec:
    """The spec (class path, kwargs, default budget) of a configured, built-in, entry-point or path agent."""
    configured = {**_merge_files(_env_files()), **_REGISTERED}
    if name_or_path in configured:
        return configured[name_or_path]
    if name_or_path in AGENT_SPECS:
        return AGENT_SPECS[name_or_path]
    presets = preset_specs()
    if name_or_path in presets:
        return presets[name_or_path]
    eps = _entry_points()
    if name_or_path in eps:
        obj = eps[name_or_path].load()
        if isinstance(obj, AgentSpec):
            return replace(obj, name=name_or_path)
        return AgentSpec(name_or_path, eps[name_or_path].value, {}, getattr(obj, "default_budget", Budget()))
    if ":" in name_or_path:
        obj = import_object(name_or_path)
        return AgentSpec(name_or_path, name_or_path, {}, getattr(obj, "default_budget", Budget()))
    from hrm_spawn.envs.suggest import did_you_mean

    raise AgentNotFoundError(
        f"unknown agent {name_or_path!r}{did_you_mean(name_or_path, list_agents())}; "
        f"known agents: {', '.join(list_agents())} "
        f"(or give a 'module:Class' path, name a YAML file of agents in ${AGENTS_ENV}, "
        f"or register one in the entry-point group {ENTRY_POINT_GROUP!r})"
    )


def identity(spec: AgentSpec, agent: Agent) -> str:
    """The version the store keys on: the agent's version, plus ``+cfg.<hash>`` of what differs from the
    registered defaults (kwargs, budget, class), so two configurations never share outcomes.

    A built-in agent with its built-in kwargs and budget keeps its plain version (stores made before
    agents were configurable stay valid). An agent with ``behaviour()`` has folded its settings into its
    own version already, so only its budget is added here.
    """
    builtin = AGENT_SPECS.get(spec.name)
    parts: dict[str, Any] = {}
    if builtin is not None and builtin.cls != spec.cls:
        parts["cls"] = spec.cls
    reference = builtin if builtin is not None and builtin.cls == spec.cls else None
    if not callable(getattr(agent, "behaviour", None)) and spec.kwargs != (
        reference.kwargs if reference else {}
    ):
        parts["kwargs"] = spec.kwargs
    default_budget = reference.budget if reference else getattr(agent, "default_budget", Budget())
    if spec.budget != default_budget:
        parts["budget"] = {k: v for k, v in spec.budget.to_dict().items() if v is not None}
    return f"{agent.version}+cfg.{stable_hash(parts, 8)}" if parts else str(agent.version)


def build_agent(spec: AgentSpec) -> Agent:
    """The agent ``spec`` describes, named after the spec, its identity as its version."""
    agent = _build(import_object(spec.cls), spec.name, dict(spec.kwargs))
    agent.name = spec.name  # the store keys on the configured name, not the class default
    agent.version = identity(spec, agent)
    return agent


def get_agent(name_or_path: str, **kwargs: Any) -> Agent:
    """Build an agent by configured or built-in name, entry-point name or ``module:Class`` path; kwargs
    override the spec's (and so change the identity)."""
    spec = get_spec(name_or_path)
    if kwargs:
        spec = replace(spec, kwargs={**spec.kwargs, **kwargs})
    return build_agent(spec)


def load_agent_specs(path: str | Path, overrides: list[str] | None = None) -> dict[str, AgentSpec]:
    """Read an agents file (a path or a preset name such as ``agents/llm-two-models``).

    ``agents`` is a mapping ``name -> {cls, kwargs, budget, description}`` or a list of entries that each
    carry a ``name``. Overrides are ``agents.NAME.kwargs.model=gpt-4o``-style ``key=value`` strings.
    """
    file = resolve_config_path(path)
    data = read_yaml(file)
    agents = data.get("agents")
    if isinstance(agents, list):
        data["agents"] = _entries_by_name(agents, file)
    elif not isinstance(agents, dict):
        raise ValueError(
            f"{file}: expected a top-level 'agents' mapping of name -> spec (or a list of entries)"
        )
    unknown = set(data) - {"agents"}
    if unknown:
        raise ValueError(f"{file}: unknown top-level keys {sorted(unknown)} (only 'agents')")
    for override in overrides or []:
        _check_override(override, data["agents"], file)
        apply_override(data, override)
    return {
        str(name): AgentSpec.from_dict(str(name), spec, where=str(file))
        for name, spec in data["agents"].items()
    }


def _check_override(override: str, agents: dict[str, Any], file: Path) -> None:
    """``agents.NAME.(kwargs.KEY|budget.KEY|cls|description)=value`` for an agent of ``file``; an error
    names the override as typed and the closest agent or key."""
    from hrm_spawn.envs.suggest import did_you_mean

    parts = override.split("=", 1)[0].strip().split(".")
    where = f"command line {override!r}"
    if parts[0] != "agents" or len(parts) < 3:
        raise ConfigError(f"{where}: agent overrides are agents.NAME.kwargs.KEY=value (or budget.KEY, cls)")
    name, section = parts[1], parts[2]
    if name not in agents:
        raise ConfigError(
            f"{where}: {file} has no agent {name!r}{did_you_mean(name, [str(a) for a in agents])}"
        )
    sections = ["kwargs", "budget", "cls", "description"]
    if section not in sections:
        raise ConfigError(
            f"{where}: unknown key {section!r}{did_you_mean(section, sections)}; an agent has {', '.join(sections)}"
        )
    budget_keys = sorted(Budget.__dataclass_fields__)
    if section == "budget" and len(parts) > 3 and parts[3] not in budget_keys:
        raise ConfigError(
            f"{where}: unknown budget key {parts[3]!r}{did_you_mean(parts[3], budget_keys)}; "
            f"a budget has {', '.join(budget_keys)}"
        )


def _entries_by_name(entries: list[Any], file: Path) -> dict[str, Any]:
    by_name: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"{file}: agents[{i}] needs a 'name'")
        if entry["name"] in by_name:
            raise ValueError(f"{file}: agents[{i}]: the name {entry['name']!r} is used twice")
        by_name[entry["name"]] = entry
    return by_name


def describe(spec: AgentSpec) -> dict[str, Any]:
    """One row of ``hrm-spawn agents``: the name, the identity the store keys on, the class and budget."""
    budget = {k: v for k, v in spec.budget.to_dict().items() if v is not None}
    return {"name": spec.name, "version": build_agent(spec).version, "cls": spec.cls, "budget": budget}


def cli_agents(args: Any) -> int:
    """``hrm-spawn agents [--file FILE] [agents.NAME.key=value ...]``: print each agent's identity as JSON."""
    import json

    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "file", None):
        specs = load_agent_specs(args.file, overrides)
    elif overrides:
        raise ConfigError("overrides need --file: they change the agents of that file")
    else:
        specs = {name: get_spec(name) for name in list_agents()}
    for spec in specs.values():
        try:
            row = describe(spec)
        except (ValueError, LookupError) as exc:  # a bad kwarg or class: say which file and agent
            source = resolve_config_path(args.file) if getattr(args, "file", None) else "the agent's spec"
            what = "" if f"agent {spec.name!r}" in str(exc) else f"agent {spec.name!r}: "
            raise ConfigError(f"{source}: {what}{exc}") from None
        print(json.dumps(row))
    return 0
