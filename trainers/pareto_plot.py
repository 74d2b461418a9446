"""pareto.png: every policy's (mean cost, pass-rate) at the report's λ and its hull over the λ sweep.

Readable with a dozen policies: each has its own colour AND marker (colour-blind readers and greyscale
prints still tell them apart), hrm's sweep is drawn as the curve it is (one point per λ, in λ order)
with the report's λ marked, point labels are placed so that none overlaps another, and the legend sits
outside the axes with each hull area named as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hrm_spawn.trainers.report_units import cost_label, lambda_unit

# 12 colours far apart in hue and lightness (tab10 without its grey, plus four darker ones); hrm is black.
COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#000080",
    "#808000",
    "#800000",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "d")
HRM_STYLE = {"color": "black", "marker": "*"}
# Label offsets (points) tried in turn: right, above, left, below, then the diagonals further out.
_OFFSETS = [
    (6, 4),
    (0, 9),
    (-6, 4),
    (0, -12),
    (6, -10),
    (-6, -10),
    (10, 14),
    (-10, 14),
    (12, -20),
    (-12, -20),
]


def policy_styles(names: list[str]) -> dict[str, dict[str, str]]:
    """A distinct (colour, marker) per policy; hrm always black stars. Pairs repeat only past 144."""
    styles: dict[str, dict[str, str]] = {}
    others = [n for n in names if n != "hrm"]
    for i, name in enumerate(others):
        styles[name] = {
            "color": COLOURS[i % len(COLOURS)],
            "marker": MARKERS[(i + i // len(COLOURS)) % len(MARKERS)],
        }
    if "hrm" in names:
        styles["hrm"] = dict(HRM_STYLE)
    return styles


def _title(report: dict[str, Any]) -> str:
    meta = report.get("meta", {})
    split = meta.get("split")
    where = f"{split} tasks" if split else "tasks"
    per = lambda_unit(report)  # λ is per one unit of cost
    head = (
        f"Cost vs pass-rate on {meta.get('num_tasks', '?')} {where}: points at λ = {report['lambda']:g} {per}"
    )
    sweep = report.get("lambda_sweep")
    if not sweep:
        return head
    lams = sorted({p["lam"] for pts in sweep["points"].values() for p in pts})
    return f"{head}\nlines: each policy's hull over the λ sweep {lams[0]:g} … {lams[-1]:g}"


def pareto_figure(report: dict[str, Any]):  # -> matplotlib.figure.Figure (imported lazily)
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    policies = report["policies"]
    sweep = report.get("lambda_sweep")
    names = list(dict.fromkeys([*policies, *(sweep["points"] if sweep else [])]))
    styles = policy_styles(names)
    fig, ax = plt.subplots(figsize=(10, 6))
    for name in names:
        _draw_policy(ax, name, styles[name], report)
    unit = cost_label(report)
    ax.set_xlabel(f"mean cost per task ({'units of one full test run' if unit == 'test runs' else unit})")
    ax.set_ylabel("mean hidden pass-rate")
    ax.set_title(_title(report), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=min(-0.02, ax.get_ylim()[0]))
    legend = ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, title="policy"
    )
    legend.get_title().set_fontsize(8)
    fig.tight_layout()
    points = {n: (m["mean_cost"], m["pass_rate"]) for n, m in policies.items()}
    texts = {n: f"hrm, λ = {report['lambda']:g}" if n == "hrm" else n for n in policies}
    if sweep and "hrm" in sweep["points"]:  # name both ends of the sweep curve
        ends = sorted(sweep["points"]["hrm"], key=lambda p: p["lam"])
        for end in (ends[0], ends[-1]):
            key = f"λ = {end['lam']:g}"
            points[key], texts[key] = (end["mean_cost"], end["pass_rate"]), key
            styles[key] = {"color": "dimgray"}
    place_labels(ax, points, styles, texts)
    return fig


def _draw_policy(ax: Any, name: str, style: dict[str, str], report: dict[str, Any]) -> None:
    from hrm_spawn.trainers.hull import upper_hull

    sweep = report.get("lambda_sweep")
    point = report["policies"].get(name)
    label = name
    if sweep and name in sweep["points"]:
        pts = sweep["points"][name]
        label = f"{name} (hull area {sweep['hull_area'][name]:.3f})"
        if name == "hrm":  # the sweep as it is: one point per λ, joined in λ order
            pts = sorted(pts, key=lambda p: p["lam"])
            ax.plot(
                [p["mean_cost"] for p in pts],
                [p["pass_rate"] for p in pts],
                color=style["color"],
                marker=".",
                lw=1.6,
                zorder=4,
                label=f"{name} λ sweep, λ = {pts[0]['lam']:g} … {pts[-1]['lam']:g}",
            )
        hull = upper_hull([(p["mean_cost"], p["pass_rate"]) for p in pts])
        xs, ys = [h[0] for h in hull], [h[1] for h in hull]
        if hull[-1][0] < sweep["max_cost"]:  # flat to the right: spending more can always be refused
            xs.append(sweep["max_cost"])
            ys.append(hull[-1][1])
        ax.plot(xs, ys, color=style["color"], ls="--" if name == "hrm" else "-", lw=1.0, alpha=0.55)
    if point is not None:
        big = name == "hrm"
        ax.scatter(
            [point["mean_cost"]],
            [point["pass_rate"]],
            color=style["color"],
            marker=style["marker"],
            s=220 if big else 55,
            edgecolors="white" if big else "none",
            zorder=6 if big else 5,
            label=f"{label}, chosen λ = {report['lambda']:g}" if big else label,
        )


def place_labels(
    ax: Any,
    points: dict[str, tuple[float, float]],
    styles: dict[str, dict[str, str]],
    texts: dict[str, str] | None = None,
) -> list:
    """Name each point, trying offsets until the label overlaps no other label nor any point marker.

    Measured on the rendered figure (real text extents), so it holds for any font. A label that fits
    nowhere takes the offset with the least overlap. Returns the label artists.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    marker_boxes = [_marker_box(ax, xy) for xy in points.values()]
    placed: list = []
    labels = []
    # Crowded regions first: points with the most close neighbours pick their spot before the others.
    order = sorted(points, key=lambda n: -sum(_close(ax, points[n], xy) for xy in points.values()))
    for name in order:
        best, best_overlap = None, float("inf")
        for dx, dy in _OFFSETS:
            text = ax.annotate(
                (texts or {}).get(name, name),
                points[name],
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8,
                color=styles[name]["color"],
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy >= 0 else "top",
                zorder=7,
                # A light box keeps the name legible where it crosses a hull line.
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
            )
            box = text.get_window_extent(renderer)
            overlap = sum(_overlap(box, other) for other in placed + marker_boxes)
            overlap += _outside(box, ax.get_window_extent(renderer))
            if overlap < best_overlap:
                if best is not None:
                    best.remove()
                best, best_overlap = text, overlap
            else:
                text.remove()
            if overlap == 0:
                break
        placed.append(best.get_window_extent(renderer))
        labels.append(best)
    return labels


def _marker_box(ax: Any, xy: tuple[float, float], radius: float = 3.5):
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform(xy)
    return Bbox([[x - radius, y - radius], [x + radius, y + radius]])


def _close(ax: Any, a: tuple[float, float], b: tuple[float, float], pixels: float = 40.0) -> bool:
    (x1, y1), (x2, y2) = ax.transData.transform(a), ax.transData.transform(b)
    return abs(x1 - x2) < pixels and abs(y1 - y2) < pixels


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Any, axes_box: Any) -> float:
    """Area of ``box`` outside the axes (a label must not spill over the frame onto the legend)."""
    return box.width * box.height - _overlap(box, axes_box)


def plot_pareto(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = pareto_figure(report)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m hrm_spawn.trainers.pareto_plot REPORT.json OUT.png``: draw a report's plot again."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m hrm_spawn.trainers.pareto_plot", description=main.__doc__
    )
    parser.add_argument("report", type=Path, help="report.json written by hrm-spawn eval or quickstart")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except FileNotFoundError:
        parser.error(f"{args.report}: file not found")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        parser.error(f"{args.report}: not a JSON report: {exc}")
    missing = [k for k in ("policies", "lambda") if not isinstance(report, dict) or k not in report]
    if missing:
        parser.error(
            f"{args.report}: no {' or '.join(repr(k) for k in missing)} key: not a report.json written by "
            "hrm-spawn eval or quickstart"
        )
    plot_pareto(report, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
