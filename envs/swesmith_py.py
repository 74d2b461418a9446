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


# ---------------------------------------------------------------- profiles (swesmith's registry)

_LOCAL_PROFILES: dict[tuple[str, str, str, str], Any] = {}


def _registry() -> Any:
    # Imported lazily: swesmith.profiles loads every language's profiles (seconds on a small machine).
    from swesmith.profiles import registry

    return registry


def register_local_profile(env: Any, owner: str, repo: str, commit: str) -> Any:
    """Register a SWE-smith ``PythonProfile`` for the local copy ``env`` (a RepoEnv) and return it.

    ``owner``/``repo``/``commit`` are what the profile stands for upstream (its ``repo_name`` is
    ``owner__repo.commit[:8]``, its mirror ``swesmith/<repo_name>``). ``clone`` hands out the checkout
    and ``_mirror_exists`` says yes, so nothing calls GitHub. ``env.aliases`` and ``env.swesmith_profile``
    are updated (the caller saves ``env``), so any process can register it again from repo.json.
    """
    import dataclasses
    import os
    from dataclasses import field

    python_modifiers()  # swesmith's Python adapter, importable without the other languages' grammars
    from swesmith.profiles.python import PythonProfile

    key = (owner, repo, commit, str(env.checkout))
    if key not in _LOCAL_PROFILES:
        checkout = str(env.checkout)

        def clone(self: Any, dest: str | None = None) -> tuple[str, bool]:
            return checkout, False  # already here; False: the caller must not delete it

        def _mirror_exists(self: Any) -> bool:
            return True

        def _is_test_path(self: Any, root: str, file: str) -> bool:
            # judged inside the checkout: the data dir itself may sit under a folder named "tests"
            rel = os.path.relpath(root, checkout)
            return PythonProfile._is_test_path(self, "" if rel == "." else rel, file)

        name = "LocalCopy_" + "".join(c if c.isalnum() else "_" for c in f"{owner}__{repo}_{commit[:8]}")
        cls = dataclasses.make_dataclass(
            name,
            [
                ("owner", str, field(default=owner)),
                ("repo", str, field(default=repo)),
                ("commit", str, field(default=commit)),
            ],
            bases=(PythonProfile,),
            namespace={"clone": clone, "_mirror_exists": _mirror_exists, "_is_test_path": _is_test_path},
        )
        _registry().register_profile(cls)
        _LOCAL_PROFILES[key] = cls
    profile = _LOCAL_PROFILES[key]()
    env.swesmith_profile = {"owner": owner, "repo": repo, "commit": commit}
    for alias in (profile.repo_name, profile.mirror_name):
        if alias not in env.aliases and alias != env.name:
            env.aliases.append(alias)
    return profile


def profile_for(repo: str, env: Any = None) -> Any | None:
    """swesmith's profile for a row's ``repo`` (mirror name ``swesmith/…`` or ``repo_name``), or None.

    A local copy's profile recorded in ``env`` (a RepoEnv) is registered first, so a fresh process finds it.
    """
    if env is not None and env.swesmith_profile:
        spec = env.swesmith_profile
        register_local_profile(env, spec["owner"], spec["repo"], spec["commit"])
    registry = _registry()
    for key in (repo, repo.rsplit("/", 1)[-1]):
        if key in registry:
            return registry.get(key)
    return None
