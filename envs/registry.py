"""Environment registry: names -> env constructors, for ``hrm-spawn env check`` and the trainers.

Built-in: ``HRMSpawn/SWESmith-v0`` (SpawnEnv). Third-party packages add theirs through the entry-point
group ``hrm_spawn.envs`` (``my-env = "pkg.mod:MyEnv"``), or call ``register`` at import time; any target
may also be given as ``module:Class``. Registration goes to gymnasium's registry too, so
``gymnasium.make(name)`` works once this module is imported; without an import first, gymnasium 1.x's
``"module:Id"`` form imports it: ``gymnasium.make("hrm_spawn.envs:HRMSpawn/SWESmith-v0", tasks=...,
mode="replay")``. gymnasium's passive env checker stays on. ``gymnasium.make_vec`` of the built-in id
gives the batched replay env (envs/vector.py) in replay mode.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym

from hrm_spawn.envs.plugins import load_object

ENTRY_POINT_GROUP = "hrm_spawn.envs"
SPAWN_ENV_ID = "HRMSpawn/SWESmith-v0"
_REGISTRY: dict[str, str | Callable[..., gym.Env]] = {}


class EnvNotFoundError(LookupError):
    """No registered, entry-point or importable env has this name."""


def register(env_id: str, entry_point: str | Callable[..., gym.Env], **gym_kwargs: Any) -> None:
    """Register with this registry and gymnasium's (``entry_point``: ``module:Class`` or a callable)."""
    _REGISTRY[env_id] = entry_point
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, **gym_kwargs)


def list_envs() -> list[str]:
    names = set(_REGISTRY)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def import_target(path: str) -> Any:
    """``package.module:Class`` or ``path/to/file.py:Class`` -> the object."""
    return load_object(path, "env target", EnvNotFoundError)


def resolve(target: str) -> Callable[..., gym.Env]:
    """A registered id, an entry-point name or ``module:Class`` -> a constructor."""
    if target in _REGISTRY:
        entry = _REGISTRY[target]
        return import_target(entry) if isinstance(entry, str) else entry
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == target:
            return ep.load()
    if ":" in target:  # module:Class, file.py:Class
        return import_target(target)
    raise EnvNotFoundError(
        f"unknown env {target!r}; registered: {', '.join(list_envs()) or '(none)'} "
        f"(or give 'module:Class', or add an entry point in the group {ENTRY_POINT_GROUP!r})"
    )


def make(target: str, **kwargs: Any) -> gym.Env:
    constructor = resolve(target)
    env = constructor(**kwargs)
    if not isinstance(env, gym.Env):
        raise TypeError(f"env {target!r}: {constructor!r} returned {type(env).__name__}, not a gymnasium.Env")
    return env


# The built-in env; registered here (not only in envs/__init__) so importing hrm_spawn.envs.registry is enough.
register(
    SPAWN_ENV_ID,
    "hrm_spawn.envs.spawn_env:SpawnEnv",
    vector_entry_point="hrm_spawn.envs.vector:make_vector_env",
)
