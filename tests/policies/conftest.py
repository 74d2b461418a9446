"""Every policy test runs with its own HRM_SPAWN_HOME (the shared ``hrm_home`` fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(hrm_home):
    return hrm_home
