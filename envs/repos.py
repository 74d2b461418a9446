"""Locally built repositories: a clean git checkout, a venv with its test dependencies, a repo.json.

``data_dir()/repos/<name>/`` holds ``checkout/``, ``venv/`` and ``repo.json``; ``<name>`` is the
``repo`` field of the tasks built from it. The local sandbox finds a task's repository here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hrm_spawn.envs.paths import repos_dir

REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass
class RepoEnv:
    name: str  # identifier, e.g. tinydb__tinydb.4.9.0 (TaskInstance.repo)
    source: str  # pypi:tinydb==4.9.0, a directory, or a git URL
    root: str  # absolute path of data_dir()/repos/<name>
    python: str  # venv interpreter with the test dependencies
    base_commit: str = ""
    pythonpath: list[str] = field(default_factory=lambda: ["."])  # relative to the checkout
    test_paths: list[str] = field(default_factory=lambda: ["tests"])  # what a full run collects
    test_run_s: float = 0.0  # wall seconds of one full test run

    @property
    def checkout(self) -> Path:
        return Path(self.root) / "checkout"

    def save(self) -> Path:
        path = Path(self.root) / "repo.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> RepoEnv:
        if not REPO_NAME_RE.match(name):
            raise ValueError(f"repo name {name!r} is not a plain identifier")
        path = (root or repos_dir()) / name / "repo.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"repository {name!r} is not built here: {path} is missing "
                "(build it with `hrm-spawn tasks build`, or use the docker/remote sandbox)"
            )
        return cls(**json.loads(path.read_text()))
