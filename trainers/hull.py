"""Cost-quality hulls: the frontier a policy family reaches, and the area under it (one number per policy).

Kept apart from trainers/report.py so the plot (trainers/pareto_plot.py) and the report both read it
without importing each other.
"""

from __future__ import annotations


def upper_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, starting at (0, 0)."""
    pts = sorted(set([(0.0, 0.0), *((max(0.0, c), q) for c, q in points)]))
    hull: list[tuple[float, float]] = []
    for p in pts:
        # Pop while the last point lies on or below the segment from its predecessor to p.
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    # Quality can always be kept while spending more: cut the hull where it starts to fall.
    best = max(range(len(hull)), key=lambda i: (hull[i][1], -hull[i][0]))
    return hull[: best + 1]


def hull_area(points: list[tuple[float, float]], max_cost: float) -> float:
    """Area under the hull from cost 0 to ``max_cost``, divided by ``max_cost``."""
    if max_cost <= 0:
        return max((q for _, q in points), default=0.0)
    hull = upper_hull(points)
    area = 0.0
    for (x1, y1), (x2, y2) in zip(hull, hull[1:], strict=False):
        if x1 >= max_cost:
            break
        if x2 > max_cost:  # cut the segment at max_cost
            y2 = y1 + (y2 - y1) * (max_cost - x1) / (x2 - x1)
            x2 = max_cost
        area += (x2 - x1) * (y1 + y2) / 2
    last_x, last_y = hull[-1]
    if last_x < max_cost:
        area += (max_cost - last_x) * last_y
    return area / max_cost
