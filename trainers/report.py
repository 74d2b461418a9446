"""Evaluation reports: per-policy metrics from episode records, the λ-sweep hull, report.json/md, pareto.png.

An ``EpisodeRecord`` is what one policy did on one task. ``summarize`` turns a policy's records at one
λ into ``resolve_rate``, ``pass_rate``, ``mean_cost``, ``score = pass_rate - λ·mean_cost`` and the same
per modifier kind. ``hull_area`` is the area under the upper convex hull of a policy's (cost, pass-rate)
points over the λ sweep, from cost 0 to a common ``max_cost``, divided by ``max_cost`` (so it is a mean
pass-rate in [0, 1]); (0, 0), submitting nothing for free, is always on the curve, and beyond its last
point the curve stays flat (spending more can always be refused).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hrm_spawn.envs.replay import OBSERVE
from hrm_spawn.trainers.hull import hull_area, upper_hull  # noqa: F401  (upper_hull: re-exported)
from hrm_spawn.trainers.report_units import cost_label, lambda_unit

REPORT_VERSION = 1


@dataclass
class EpisodeRecord:
    instance_id: str
    pass_rate: float  # hidden pass-rate of the submitted candidate
    resolved: bool
    cost: float  # spent in the episode, in the store's cost unit (report meta "cost_unit")
    steps: int
    actions: list[int] = field(default_factory=list)
    modifier_kinds: list[str] = field(default_factory=list)


def _metrics(records: list[EpisodeRecord], lam: float) -> dict[str, float]:
    n = len(records)
    if n == 0:
        return {
            "n": 0,
            "resolve_rate": 0.0,
            "pass_rate": 0.0,
            "mean_cost": 0.0,
            "score": 0.0,
            "mean_steps": 0.0,
        }
    pass_rate = sum(r.pass_rate for r in records) / n
    mean_cost = sum(r.cost for r in records) / n
    return {
        "n": n,
        "resolve_rate": sum(r.resolved for r in records) / n,
        "pass_rate": pass_rate,
        "mean_cost": mean_cost,
        "score": pass_rate - lam * mean_cost,
        "mean_steps": sum(r.steps for r in records) / n,
    }


def summarize(records: list[EpisodeRecord], lam: float) -> dict[str, Any]:
    """Metrics of one policy at one λ, overall and per modifier kind (a combined bug counts in each)."""
    by_kind: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        for kind in record.modifier_kinds or ["unknown"]:
            by_kind[kind].append(record)
    out = _metrics(records, lam)
    out["by_kind"] = {kind: _metrics(rs, lam) for kind, rs in sorted(by_kind.items())}
    return out


def build_report(
    policies: dict[str, dict[str, Any]],
    lam: float,
    meta: dict[str, Any],
    sweep: dict[str, list[dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """``policies``: name -> summarize() at ``lam``; ``sweep``: name -> [{lam, pass_rate, mean_cost, ...}]."""
    report: dict[str, Any] = {"version": REPORT_VERSION, "lambda": lam, "meta": meta, "policies": policies}
    if sweep:
        max_cost = max((p["mean_cost"] for pts in sweep.values() for p in pts), default=0.0)
        report["lambda_sweep"] = {
            "max_cost": max_cost,
            "points": sweep,
            "hull_area": {
                name: hull_area([(p["mean_cost"], p["pass_rate"]) for p in pts], max_cost)
                for name, pts in sweep.items()
            },
        }
    report["targets"] = targets(report)
    return report


def _pool_metrics(parts: list[dict[str, Any]], lam: float) -> dict[str, Any]:
    """Task-weighted means of per-split metrics: the metrics of all their episodes together."""
    n = sum(p["n"] for p in parts)
    out: dict[str, Any] = {"n": n}
    for key in ("resolve_rate", "pass_rate", "mean_cost", "mean_steps"):
        if key in parts[0]:  # sweep points carry no mean_steps
            out[key] = sum(p[key] * p["n"] for p in parts) / n if n else 0.0
    out["score"] = out["pass_rate"] - lam * out["mean_cost"]
    return out


def pool_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report over the union of several reports' disjoint task sets (cross-fitted folds).

    Each policy's metrics, per kind too, and each sweep point are pooled as if all the episodes had been
    summarised together; hull areas and targets are then computed on the pooled figures. The reports must
    share λ, the policies and the sweep grid.
    """
    lam = reports[0]["lambda"]
    if any(r["lambda"] != lam or r["policies"].keys() != reports[0]["policies"].keys() for r in reports):
        raise ValueError("pool_reports: the reports differ in λ or in the policies they compare")
    policies: dict[str, dict[str, Any]] = {}
    for name in reports[0]["policies"]:
        parts = [r["policies"][name] for r in reports]
        pooled = _pool_metrics(parts, lam)
        kinds = sorted({k for p in parts for k in p.get("by_kind", {})})
        pooled["by_kind"] = {
            k: _pool_metrics([p["by_kind"][k] for p in parts if k in p["by_kind"]], lam) for k in kinds
        }
        if "sequence" in parts[0]:
            pooled["sequences"] = [p["sequence"] for p in parts]  # chosen per fold, on its train side
        policies[name] = pooled
    sizes = [r["meta"]["num_tasks"] for r in reports]
    meta = {
        **{
            k: v
            for k, v in reports[0]["meta"].items()
            if k not in ("checkpoint", "num_tasks", "num_train_tasks")
        },
        "pooled_from": len(reports),
        "checkpoints": [r["meta"].get("checkpoint") for r in reports],
        "num_tasks": sum(sizes),
        "num_train_tasks": [r["meta"].get("num_train_tasks") for r in reports],
    }
    return build_report(policies, lam, meta, _pool_sweep(reports, sizes))


def _pool_sweep(reports: list[dict[str, Any]], sizes: list[int]) -> dict[str, list[dict[str, float]]] | None:
    sweeps = [r.get("lambda_sweep") for r in reports]
    if not all(sweeps):
        return None
    out: dict[str, list[dict[str, float]]] = {}
    for name, first in sweeps[0]["points"].items():
        lams = [p["lam"] for p in first]
        if any([p["lam"] for p in s["points"][name]] != lams for s in sweeps):
            raise ValueError(f"pool_reports: the λ sweeps of {name!r} use different grids")
        out[name] = []
        for j, lam in enumerate(lams):
            parts = [{**s["points"][name][j], "n": n} for s, n in zip(sweeps, sizes, strict=True)]
            m = _pool_metrics(parts, lam)
            out[name].append(
                {k: m[k] for k in ("pass_rate", "mean_cost", "resolve_rate", "score")} | {"lam": lam}
            )
    return out


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The product's decision-quality targets, checked on this report (None where not measurable)."""
    pol = report["policies"]
    out: dict[str, Any] = {}
    hrm, oracle, spawn_all = pol.get("hrm"), pol.get("oracle"), pol.get("spawn_all")
    if hrm and oracle and spawn_all:
        resolve_ratio = hrm["resolve_rate"] / oracle["resolve_rate"] if oracle["resolve_rate"] else None
        cost_ratio = hrm["mean_cost"] / spawn_all["mean_cost"] if spawn_all["mean_cost"] else None
        out["resolve_vs_oracle"] = resolve_ratio
        out["cost_vs_spawn_all"] = cost_ratio
        out["quality_target_met"] = (
            resolve_ratio is not None
            and cost_ratio is not None
            and resolve_ratio >= 0.95
            and cost_ratio <= 0.5
        )
    if hrm:
        others = {k: v["score"] for k, v in pol.items() if k not in ("hrm", "oracle")}
        out["best_other_score"] = max(others.values()) if others else None
        out["beats_all_baselines"] = bool(others) and all(hrm["score"] > s for s in others.values())
    sweep = report.get("lambda_sweep")
    if sweep and "hrm" in sweep["hull_area"] and "best_cascade" in sweep["hull_area"]:
        out["hull_beats_best_cascade"] = sweep["hull_area"]["hrm"] > sweep["hull_area"]["best_cascade"]
    if sweep:
        out.update(sweep_quality(sweep["points"]))
    return out


def sweep_quality(points: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """The quality target along the λ sweep: one λ-conditioned checkpoint may meet it at any λ it serves.

    ``sweep_resolve_vs_oracle``: the largest resolve-rate share of the oracle's among the sweep points
    that spend at most half of spawn_all's compute; ``sweep_quality_lambda``: the λ of that point.
    """
    if not all(k in points for k in ("hrm", "oracle", "spawn_all")):
        return {}
    best: tuple[float, float] | None = None
    for h, o, s in zip(points["hrm"], points["oracle"], points["spawn_all"], strict=True):
        if o.get("resolve_rate") and s["mean_cost"] and h["mean_cost"] <= 0.5 * s["mean_cost"]:
            share = h["resolve_rate"] / o["resolve_rate"]
            if best is None or share > best[0]:
                best = (share, h["lam"])
    return {
        "sweep_resolve_vs_oracle": None if best is None else best[0],
        "sweep_quality_lambda": None if best is None else best[1],
        "sweep_quality_target_met": best is not None and best[0] >= 0.95,
    }


def _cost_sentence(report: dict[str, Any]) -> str:
    label = cost_label(report)
    if label == "test runs":
        label = "test runs (one full test run of the task is 1)"
    limit = report.get("meta", {}).get("max_cost")
    limit_text = f"; an episode stops at max_cost = {limit:g}" if isinstance(limit, (int, float)) else ""
    return f"score = pass_rate − λ · mean_cost; cost in {label}, λ {lambda_unit(report)}{limit_text}."


def _observe_sentence(report: dict[str, Any]) -> str:
    """What the policies saw of each run (the env's ``observe`` switch; ``agent`` unless the report says)."""
    meta = report.get("meta", {})
    observe = meta.get("observe", "agent")
    return f"Observed after each run (env.observe = {observe}): {meta.get('observe_means') or OBSERVE.get(observe, '?')}."


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def comparison_table(report: dict[str, Any]) -> str:
    """A markdown table of every policy at the report's λ (printed by eval and quickstart)."""
    head = (
        f"| policy | resolve_rate | pass_rate | mean_cost ({cost_label(report)}) | score | mean_steps |\n"
        "|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, m in report["policies"].items():
        rows.append(
            f"| {name} | {_fmt(m['resolve_rate'])} | {_fmt(m['pass_rate'])} | {_fmt(m['mean_cost'])} "
            f"| {_fmt(m['score'])} | {_fmt(m['mean_steps'])} |"
        )
    return head + "\n".join(rows) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    source = f"Checkpoint `{meta.get('checkpoint', '-')}`"
    if "pooled_from" in meta:  # cross-fitted: each task judged by the checkpoint that held it out
        source = f"{meta['pooled_from']} checkpoints pooled, one per held-out fold"
    lines = [
        "# hrm-spawn evaluation",
        "",
        f"{source}, tasks `{meta.get('tasks', '-')}` "
        f"(split {meta.get('split', '-')}, {meta.get('num_tasks', '-')} tasks), mode {meta.get('mode', '-')}, "
        f"λ = {report['lambda']} {lambda_unit(report)}.",
        "",
        _cost_sentence(report),
        "",
        _observe_sentence(report),
        "",
        comparison_table(report),
    ]
    sweep = report.get("lambda_sweep")
    if sweep:
        lines += [
            "## λ sweep: area under the cost–quality hull",
            "",
            f"Normalised by the largest mean cost seen ({sweep['max_cost']:.3f} {cost_label(report)}).",
            "",
            "| policy | hull area |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.3f} |" for k, v in sweep["hull_area"].items()]
        lines.append("")
    lines += ["## Targets", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in report["targets"].items()]
    hrm = report["policies"].get("hrm")
    if hrm and hrm.get("by_kind"):
        lines += [
            "",
            "## hrm per modifier kind",
            "",
            f"| kind | n | resolve_rate | pass_rate | mean_cost ({cost_label(report)}) |",
            "|---|---|---|---|---|",
        ]
        for kind, m in hrm["by_kind"].items():
            lines.append(
                f"| {kind} | {m['n']} | {_fmt(m['resolve_rate'])} | {_fmt(m['pass_rate'])} "
                f"| {_fmt(m['mean_cost'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_pareto(report: dict[str, Any], path: Path) -> None:
    """pareto.png (trainers/pareto_plot.py; matplotlib is imported only here)."""
    from hrm_spawn.trainers.pareto_plot import plot_pareto as draw

    draw(report, path)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "pareto.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    plot_pareto(report, paths["png"])
    return paths


def record_dict(record: EpisodeRecord) -> dict[str, Any]:
    return asdict(record)
