"""Report metrics, the hull area, and the files eval writes."""

from __future__ import annotations

import json

import pytest

from trainers.report import EpisodeRecord, build_report, hull_area, summarize, upper_hull, write_report


def _rec(iid: str, pr: float, cost: float, kinds: list[str]) -> EpisodeRecord:
    return EpisodeRecord(iid, pass_rate=pr, resolved=pr == 1.0, cost=cost, steps=1, modifier_kinds=kinds)


def test_summarize_overall_and_per_kind() -> None:
    records = [_rec("a", 1.0, 2.0, ["op_swap"]), _rec("b", 0.5, 4.0, ["op_swap", "remove_loop"])]
    m = summarize(records, lam=0.1)
    assert m["n"] == 2
    assert m["resolve_rate"] == pytest.approx(0.5)
    assert m["pass_rate"] == pytest.approx(0.75)
    assert m["mean_cost"] == pytest.approx(3.0)
    assert m["score"] == pytest.approx(0.75 - 0.3)
    assert m["by_kind"]["op_swap"]["n"] == 2
    assert m["by_kind"]["remove_loop"]["pass_rate"] == pytest.approx(0.5)


def test_hull_drops_dominated_points_and_keeps_origin() -> None:
    hull = upper_hull([(1.0, 0.5), (2.0, 0.55), (3.0, 0.9), (4.0, 0.8)])
    assert hull == [(0.0, 0.0), (1.0, 0.5), (3.0, 0.9)]


def test_hull_area_is_mean_quality_over_cost_range() -> None:
    # One point (2, 1): ramp from (0,0) to (2,1) then flat to 4 -> (1 + 2) / 4.
    assert hull_area([(2.0, 1.0)], max_cost=4.0) == pytest.approx(0.75)
    # A free perfect policy has area 1; more points can only add area.
    assert hull_area([(0.0, 1.0)], max_cost=4.0) == pytest.approx(1.0)
    assert hull_area([(2.0, 1.0), (1.0, 0.8)], 4.0) > hull_area([(2.0, 1.0)], 4.0)


def test_report_files_and_schema(tmp_path) -> None:
    recs = [_rec("a", 1.0, 2.0, ["op_swap"])]
    policies = {
        "hrm": summarize(recs, 0.1),
        "oracle": summarize(recs, 0.1),
        "spawn_all": summarize([_rec("a", 1.0, 6.0, ["op_swap"])], 0.1),
        "halt": summarize([_rec("a", 0.0, 0.0, ["op_swap"])], 0.1),
    }
    sweep = {
        "hrm": [{"lam": 0.0, "pass_rate": 1.0, "mean_cost": 2.0}],
        "best_cascade": [{"lam": 0.0, "pass_rate": 1.0, "mean_cost": 4.0}],
    }
    report = build_report(policies, 0.1, {"checkpoint": "x"}, sweep)
    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert set(data["policies"]) == {"hrm", "oracle", "spawn_all", "halt"}
    for m in data["policies"].values():
        assert {"resolve_rate", "pass_rate", "mean_cost", "score", "by_kind"} <= set(m)
    assert data["targets"]["resolve_vs_oracle"] == pytest.approx(1.0)
    assert data["targets"]["cost_vs_spawn_all"] == pytest.approx(2.0 / 6.0)
    assert data["targets"]["quality_target_met"] is True
    assert data["targets"]["hull_beats_best_cascade"] is True
    assert paths["png"].stat().st_size > 1000
    assert "| hrm |" in paths["md"].read_text()
