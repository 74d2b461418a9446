"""Environment registry: names -> env constructors, for ``hrm-spawn env check`` and the trainers.

Built-in: ``HRMSpawn/SWESmith-v0`` (SpawnEnv). Third-party packages add theirs through the entry-point
group ``hrm_spawn.envs`` (``my-env = "pkg.mod:MyEnv"``), or call ``register`` at import time; any target
may also be given as ``module:Class``. Registration goes to gymnasium's registry too, so
``gymnasium.make(name)`` works.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import gymnasium as gym

ENTRY_POINT_GROUP = "hrm_spawn.envs"
SPAWN_ENV_ID = "HRMSpawn/SWESmith-v0"
_REGISTRY: dict[str, str | Callable[..., gym.Env]] = {}


class EnvNotFoundError(LookupError):
    """No registered, entry-point or importable env has this name."""


def register(env_id: str, entry_point: str | Callable[..., gym.Env], **gym_kwargs: Any) -> None:
    """Register with this registry and gymnasium's (``entry_point``: ``module:Class`` or a callable)."""
    _REGISTRY[env_id] = entry_point
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, disable_env_checker=True, **gym_kwargs)


def list_envs() -> list[str]:
    names = set(_REGISTRY)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def import_target(path: str) -> Any:
    """``package.module:Class`` or ``path/to/file.py:Class`` -> the object."""
    module_name, _, attr = path.rpartition(":")
    if not module_name or not attr:
        raise EnvNotFoundError(f"env target {path!r} is not a registered name or 'module:Class'")
    try:
        obj: Any = _load_file(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
    except (ImportError, FileNotFoundError) as exc:
        raise EnvNotFoundError(f"env target {path!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EnvNotFoundError(f"env target {path!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _load_file(file: str) -> Any:
    path = Path(file).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file {file}")
    name = f"hrm_spawn_user_env_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so the env pickles for subprocess vector envs
    spec.loader.exec_module(module)
    return module


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


# The built-in env; registered here (not only in envs/__init__) so importing envs.registry is enough.
register(SPAWN_ENV_ID, "envs.spawn_env:SpawnEnv")
