"""Report metrics, the hull area, and the files eval writes."""

from __future__ import annotations

import json

import pytest

from hrm_spawn.trainers.report import (
    EpisodeRecord,
    build_report,
    hull_area,
    pool_reports,
    render_markdown,
    summarize,
    upper_hull,
    write_report,
)


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


def _report(records: dict[str, dict[float, list[EpisodeRecord]]], lam: float) -> dict:
    """A report with a sweep from per-policy, per-λ records (as evaluate builds it)."""
    policies = {name: summarize(by_lam[lam], lam) for name, by_lam in records.items()}
    sweep = {
        name: [
            {
                "lam": x,
                **{k: summarize(rs, x)[k] for k in ("pass_rate", "mean_cost", "resolve_rate", "score")},
            }
            for x, rs in sorted(by_lam.items())
        ]
        for name, by_lam in records.items()
    }
    return build_report(policies, lam, {"num_tasks": len(records["hrm"][lam]), "checkpoint": "c"}, sweep)


def _fold_records(tasks: list[str], shift: float) -> dict[str, dict[float, list[EpisodeRecord]]]:
    def recs(pr: float, cost: float) -> list[EpisodeRecord]:
        return [_rec(t, min(1.0, pr + shift * i), cost + i, ["k" + str(i % 2)]) for i, t in enumerate(tasks)]

    return {
        "hrm": {0.0: recs(0.6, 3.0), 0.05: recs(0.4, 1.0)},
        "oracle": {0.0: recs(1.0, 2.0), 0.05: recs(1.0, 2.0)},
        "spawn_all": {0.0: recs(1.0, 9.0), 0.05: recs(1.0, 9.0)},
        "best_cascade": {0.0: recs(0.5, 4.0), 0.05: recs(0.3, 2.0)},
    }


def test_pooled_folds_equal_one_report_over_all_their_tasks() -> None:
    a, b = _fold_records(["a1", "a2", "a3"], 0.2), _fold_records(["b1", "b2"], 0.1)
    folds = [_report(a, 0.05), _report(b, 0.05)]
    folds[0]["policies"]["best_cascade"]["sequence"] = "x"
    folds[1]["policies"]["best_cascade"]["sequence"] = "y"
    joined = {name: {lam: a[name][lam] + b[name][lam] for lam in a[name]} for name in a}
    whole, pooled = _report(joined, 0.05), pool_reports(folds)
    for name, m in whole["policies"].items():
        for key in ("n", "resolve_rate", "pass_rate", "mean_cost", "score"):
            assert pooled["policies"][name][key] == pytest.approx(m[key]), (name, key)
        for kind, km in m["by_kind"].items():
            assert pooled["policies"][name]["by_kind"][kind]["pass_rate"] == pytest.approx(km["pass_rate"])
    assert pooled["lambda_sweep"]["hull_area"] == pytest.approx(whole["lambda_sweep"]["hull_area"])
    assert pooled["targets"] == pytest.approx(whole["targets"])
    assert pooled["meta"]["num_tasks"] == 5 and pooled["meta"]["pooled_from"] == 2
    assert pooled["policies"]["best_cascade"]["sequences"] == ["x", "y"]
    assert render_markdown(pooled).splitlines()[2].startswith("2 checkpoints pooled, one per held-out fold")


def test_pooling_refuses_reports_that_do_not_match() -> None:
    a = _report(_fold_records(["a"], 0.0), 0.05)
    b = _report(_fold_records(["b"], 0.0), 0.0)
    with pytest.raises(ValueError, match="differ in λ"):
        pool_reports([a, b])


def test_sweep_quality_takes_the_best_point_within_half_of_spawn_all() -> None:
    # hrm at λ 0: resolve 1/1 of the oracle's but cost 6 > 9/2; at λ 0.05: resolve 0 at cost 1.
    report = _report(
        _fold_records(["a", "b"], 0.0)
        | {
            "hrm": {
                0.0: [_rec("a", 1.0, 6.0, []), _rec("b", 1.0, 6.0, [])],
                0.02: [_rec("a", 1.0, 4.0, []), _rec("b", 0.0, 4.0, [])],
                0.05: [_rec("a", 0.0, 1.0, []), _rec("b", 0.0, 1.0, [])],
            },
            "oracle": {x: [_rec("a", 1.0, 2.0, []), _rec("b", 1.0, 2.0, [])] for x in (0.0, 0.02, 0.05)},
            "spawn_all": {x: [_rec("a", 1.0, 9.0, []), _rec("b", 1.0, 9.0, [])] for x in (0.0, 0.02, 0.05)},
            "best_cascade": {
                x: [_rec("a", 0.0, 0.0, []), _rec("b", 0.0, 0.0, [])] for x in (0.0, 0.02, 0.05)
            },
        },
        0.05,
    )
    t = report["targets"]
    assert t["sweep_resolve_vs_oracle"] == pytest.approx(0.5) and t["sweep_quality_lambda"] == 0.02
    assert t["sweep_quality_target_met"] is False
