"""Shared fixtures: an isolated data dir, the ``calc`` fixture repository and a task on it.

The repository and task are built once per session (a few seconds) and copied into each test's own
``HRM_SPAWN_HOME``, so tests can change them freely.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# swesmith installs a stray top-level ``tests`` package, so the fixtures are imported from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures.fixture_repo import build_fixture_repo, copy_repo, make_fixture_task  # noqa: E402

from hrm_spawn.envs.repos import RepoEnv  # noqa: E402


@pytest.fixture(autouse=True)
def _sb3_logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SB3 writes a logger folder under /tmp/SB3-<date> when none is configured; keep it in the test's dir."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3"))


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where test agents leave one file per run (``HRM_TEST_MARKS``), to count what ran."""
    folder = tmp_path / "marks"
    folder.mkdir()
    monkeypatch.setenv("HRM_TEST_MARKS", str(folder))
    return folder


@pytest.fixture
def hrm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir for one test (``HRM_SPAWN_HOME``)."""
    home = tmp_path / "hrm_home"
    home.mkdir()
    monkeypatch.setenv("HRM_SPAWN_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def hrm_home_session(tmp_path_factory: pytest.TempPathFactory):
    """One data dir for a whole session, for expensive builds shared by many tests."""
    home = tmp_path_factory.mktemp("hrm_home_session")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def fixture_repo_session(tmp_path_factory: pytest.TempPathFactory) -> RepoEnv:
    """The fixture repository, built once under a private session folder (read-only by convention)."""
    return build_fixture_repo(tmp_path_factory.mktemp("fixture_build") / "repos")


@pytest.fixture(scope="session")
def fixture_task_session(fixture_repo_session: RepoEnv):
    return make_fixture_task(fixture_repo_session)


@pytest.fixture
def fixture_repo(hrm_home: Path, fixture_repo_session: RepoEnv) -> RepoEnv:
    """The ``calc`` RepoEnv inside this test's ``data_dir()/repos/`` (a copy; change it freely)."""
    return copy_repo(fixture_repo_session, hrm_home)


@pytest.fixture
def fixture_task(fixture_repo: RepoEnv, fixture_task_session):
    """A TaskInstance on ``fixture_repo``: an operator flip in ``clamp``, F2P/P2P measured."""
    return fixture_task_session.model_copy(deep=True)
