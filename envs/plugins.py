"""User code named by a path: ``package.module:Attr.sub`` or ``path/to/file.py:Attr``.

Both registries (agents, environments) load third-party objects this way, with an error that names
the path and what was wrong with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def load_object(path: str, what: str, error: type[Exception] = LookupError) -> Any:
    """The object at ``path``; ``error(f"{what} {path!r}: ...")`` when it cannot be had."""
    module_name, _, attr = path.rpartition(":")
    if not module_name or not attr:
        raise error(f"{what} {path!r} is not of the form 'module:Class'")
    try:
        obj: Any = (
            _load_file(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
        )
    except (ImportError, FileNotFoundError) as exc:
        raise error(f"{what} {path!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise error(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _load_file(file: str) -> Any:
    path = Path(file).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file {file}")
    name = f"hrm_spawn_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so objects from it pickle for subprocess vector envs and worker pools
    spec.loader.exec_module(module)
    return module
