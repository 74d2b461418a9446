"""Where generated data lives: built tasks, outcome stores, runs, checkpoints.

``HRM_SPAWN_HOME`` overrides the default ``~/.cache/hrm-spawn``. Nothing here is committed.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    root = Path(os.environ.get("HRM_SPAWN_HOME") or Path.home() / ".cache" / "hrm-spawn").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(name: str) -> Path:
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def tasks_dir() -> Path:
    return subdir("tasks")


def repos_dir() -> Path:
    return subdir("repos")


def stores_dir() -> Path:
    return subdir("stores")


def runs_dir() -> Path:
    return subdir("runs")
