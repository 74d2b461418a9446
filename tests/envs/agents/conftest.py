"""Bug tasks on the ``calc`` fixture repository, one per mutation family, plus removal and combined bugs.

Each task is made the way SWE-smith makes one: a rewrite of one function, turned into a git diff, with
FAIL_TO_PASS / PASS_TO_PASS measured by running the tests clean and buggy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agent_bugs import BUGS, make_bug_task  # noqa: F401
from fixtures.fixture_repo import REPO_NAME, copy_repo, git

from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.sandbox import Sandbox
from hrm_spawn.envs.tasks import TaskInstance


@pytest.fixture(scope="session")
def agent_home(hrm_home_session: Path, fixture_repo_session: RepoEnv) -> Path:
    """A session data dir holding the fixture repository, for sandboxes shared by the agent tests."""
    root = hrm_home_session / "repos" / REPO_NAME
    if not root.exists():
        copy_repo(fixture_repo_session, hrm_home_session)
    return hrm_home_session


@pytest.fixture(scope="session")
def bug_task(fixture_repo_session: RepoEnv):
    """``bug_task(name)`` -> a TaskInstance with that bug from BUGS (built once per session)."""
    cache: dict[str, TaskInstance] = {}

    def get(name: str) -> TaskInstance:
        if name not in cache:
            cache[name] = make_bug_task(fixture_repo_session, name)
        return cache[name].model_copy(deep=True)

    return get


@pytest.fixture(scope="session")
def sandbox(agent_home: Path):
    with Sandbox() as box:
        yield box


def checkout_copy(repo: RepoEnv, dest: Path, patch: str = "") -> Path:
    """A plain clone of the fixture checkout with ``patch`` applied (no sandbox)."""
    git(dest.parent, "clone", "-q", "--shared", str(repo.checkout), str(dest))
    if patch:
        subprocess.run(["git", "apply", "-"], cwd=dest, input=patch, text=True, check=True)
    return dest
