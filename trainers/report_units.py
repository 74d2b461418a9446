"""What a report's costs and λ are in, as reports, tables and plots write them (older reports: test runs)."""

from __future__ import annotations

from typing import Any

from hrm_spawn.envs.replay import cost_unit_label, per_cost_unit


def cost_label(report: dict[str, Any]) -> str:
    """The unit the report's costs are in, as it is written (``USD``, ``tokens``, ``test runs``); reports
    that do not say are in test runs (the only unit before imported tables)."""
    meta = report.get("meta", {})
    return meta.get("cost_unit_label") or cost_unit_label(meta.get("cost_unit") or "test_runs")


def lambda_unit(report: dict[str, Any]) -> str:
    """``per test run``, ``per USD``, ...: what the report's λ is per (older reports: from the unit)."""
    meta = report.get("meta", {})
    return meta.get("lambda_unit") or per_cost_unit(meta.get("cost_unit") or "test_runs")
