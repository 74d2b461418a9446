"""Fixtures the sandbox tests share: the fixture task's fix, and a local sandbox prepared on that task."""

from __future__ import annotations

import pytest
from fixtures.fixture_repo import fix_patch

from hrm_spawn.envs.sandbox import Sandbox


@pytest.fixture
def fix(fixture_repo, fixture_task) -> str:
    return fix_patch(fixture_repo, fixture_task.patch)


@pytest.fixture
def sandbox(fixture_task):
    with Sandbox() as sb:
        sb.prepare(fixture_task)
        yield sb
