"""pareto.png stays readable with a dozen policies: distinct styles, no overlapping labels, legend outside."""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from hrm_spawn.trainers.pareto_plot import pareto_figure, plot_pareto, policy_styles
from hrm_spawn.trainers.report import build_report

matplotlib.use("Agg")

# (resolve, pass, cost) at λ = 0.025: the quickstart's held-out table in docs/results.md (11 policies).
TABLE = {
    "hrm": (0.100, 0.287, 5.034),
    "halt": (0.0, 0.0, 0.0),
    "single:op-flip": (0.2, 0.2, 7.415),
    "single:swap": (0.0, 0.015, 8.813),
    "single:const": (0.2, 0.41, 9.266),
    "single:cond": (0.0, 0.0, 7.59),
    "single:broad": (0.3, 0.487, 9.861),
    "spawn_all": (0.4, 0.499, 33.084),
    "best_cascade": (0.3, 0.487, 10.972),
    "random": (0.24, 0.338, 21.069),
    "oracle": (0.5, 0.517, 6.617),
}
LAMS = [0.0, 0.01, 0.02, 0.025, 0.03, 0.05]
# hrm's sweep moves along cost and pass-rate; the baselines do not depend on λ.
HRM_SWEEP = [(0.487, 7.9), (0.45, 6.9), (0.287, 5.6), (0.287, 5.034), (0.25, 4.1), (0.15, 2.2)]


def synthetic_report(lam: float = 0.025) -> dict:
    def point(lam_: float, r: float, p: float, c: float) -> dict:
        return {"lam": lam_, "resolve_rate": r, "pass_rate": p, "mean_cost": c, "score": p - lam_ * c}

    policies = {k: {**point(lam, *v), "n": 30, "mean_steps": 1.0} for k, v in TABLE.items()}
    sweep = {k: [point(x, *v) for x in LAMS] for k, v in TABLE.items()}
    sweep["hrm"] = [point(x, 0.1, p, c) for x, (p, c) in zip(LAMS, HRM_SWEEP, strict=True)]
    return build_report(policies, lam, {"split": "heldout", "num_tasks": 30}, sweep)


def test_every_policy_has_its_own_colour_and_marker() -> None:
    names = ["hrm", *(f"p{i}" for i in range(14))]
    styles = policy_styles(names)
    pairs = [(s["color"], s["marker"]) for s in styles.values()]
    assert len(set(pairs)) == len(pairs)
    others = [styles[n]["color"] for n in names[1:13]]
    assert len(set(others)) == 12 and "black" not in others  # hrm's colour is its own
    assert styles["hrm"] == {"color": "black", "marker": "*"}


@pytest.fixture(scope="module")
def figure():
    import matplotlib.pyplot as plt

    fig = pareto_figure(synthetic_report())
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_legend_sits_outside_the_axes_and_names_hull_areas(figure) -> None:
    ax = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    legend = ax.get_legend()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    entries = [t.get_text() for t in legend.get_texts()]
    for name in TABLE:
        assert any(e.startswith(f"{name} (hull area ") for e in entries), name
    assert "hrm λ sweep, λ = 0 … 0.05" in entries
    assert any("chosen λ = 0.025" in e for e in entries)


def test_title_says_points_at_one_lambda_and_hulls_over_the_sweep(figure) -> None:
    title = figure.axes[0].get_title()
    assert "points at λ = 0.025" in title and "hull over the λ sweep 0 … 0.05" in title


def test_the_hrm_sweep_is_one_curve_in_lambda_order(figure) -> None:
    (curve,) = [line for line in figure.axes[0].get_lines() if line.get_label().startswith("hrm λ sweep")]
    assert list(curve.get_xdata()) == [c for _, c in HRM_SWEEP]


def test_point_labels_do_not_overlap(figure) -> None:
    ax = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert {"halt", "oracle", "hrm, λ = 0.025", "λ = 0", "λ = 0.05"} <= set(boxes)
    axes_box = ax.get_window_extent(renderer)
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        assert not box_a.overlaps(box_b), (a, b)
    for name, box in boxes.items():
        assert axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1), name


def test_plot_pareto_writes_a_png(tmp_path) -> None:
    path = tmp_path / "pareto.png"
    plot_pareto(synthetic_report(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_can_be_drawn_again_from_a_report_file(tmp_path) -> None:
    import json

    from hrm_spawn.trainers.pareto_plot import main

    report = tmp_path / "report.json"
    report.write_text(json.dumps(synthetic_report()))
    assert main([str(report), str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "report.json: file not found"),
        ("{not json", "report.json: not a JSON report"),
        ('{"meta": {}}', "no 'policies' or 'lambda' key: not a report.json"),
        ("[1, 2]", "no 'policies' or 'lambda' key"),
    ],
)
def test_a_bad_report_file_is_one_line_not_a_traceback(tmp_path, capsys, content, message) -> None:
    from hrm_spawn.trainers.pareto_plot import main

    report = tmp_path / "report.json"
    if content is not None:
        report.write_text(content)
    with pytest.raises(SystemExit) as caught:
        main([str(report), str(tmp_path / "out.png")])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_the_cost_axis_names_the_reports_unit() -> None:
    report = synthetic_report()
    assert "one full test run" in pareto_figure(report).axes[0].get_xlabel()
    report["meta"] = {**report.get("meta", {}), "cost_unit": "USD"}
    assert pareto_figure(report).axes[0].get_xlabel() == "mean cost per task (USD)"
