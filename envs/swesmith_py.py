"""SWE-smith's Python bug-generation parts, importable without the other languages' grammars.

swesmith 0.0.9's ``bug_gen.procedural`` and ``bug_gen.adapters`` package ``__init__`` files import the
tree-sitter grammars of every language (C, C++, Go, Java, ...), which a Python-only install lacks. Their
Python submodules need none of that, so when the package import fails on a missing grammar we register
the two packages as bare namespaces (same ``__path__``, ``__init__`` not run) and import only the Python
submodules. With all grammars installed the normal import is used. (The adapter also imports ``astor``,
which swesmith does not declare: it is one of this project's dependencies.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import cache
from typing import Any

_PACKAGES = ("swesmith.bug_gen.procedural", "swesmith.bug_gen.adapters")


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"swesmith package {name} not found: is swesmith installed?")
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = name
    sys.modules[name] = module


@cache
def _load() -> dict[str, Any]:
    for name in _PACKAGES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("tree_sitter"):
                raise
            sys.modules.pop(name, None)
            _bare_package(name)
    procedural = importlib.import_module("swesmith.bug_gen.procedural.python")
    adapter = importlib.import_module("swesmith.bug_gen.adapters.python")
    adapters = sys.modules["swesmith.bug_gen.adapters"]
    if not hasattr(adapters, "get_entities_from_file"):
        # What RepoProfile.extract_entities looks up; on a bare package only Python is there.
        adapters.get_entities_from_file = {".py": adapter.get_entities_from_file_py}
    utils = importlib.import_module("swesmith.bug_gen.utils")
    return {
        "MODIFIERS_PYTHON": procedural.MODIFIERS_PYTHON,
        "get_entities_from_file_py": adapter.get_entities_from_file_py,
        "generate_patch_fast": utils.generate_patch_fast,
    }


def python_modifiers() -> list[Any]:
    """SWE-smith's 13 Python procedural modifiers (the shared module-level instances: copy before use)."""
    return list(_load()["MODIFIERS_PYTHON"])


def entities_from_file(path: str) -> list[Any]:
    """The functions and classes of one Python file, as SWE-smith's Python adapter extracts them."""
    found: list[Any] = []
    _load()["get_entities_from_file_py"](found, path)
    return found


def patch_for(entity: Any, rewrite: Any, repo_dir: str) -> str | None:
    """The git diff that replaces ``entity`` by ``rewrite`` (SWE-smith's difflib patch writer)."""
    return _load()["generate_patch_fast"](entity, rewrite, repo_dir)
