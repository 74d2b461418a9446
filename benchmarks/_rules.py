"""Fixed spawn rules chosen on training folds and judged on the held-out one: what a policy that sees
only what the HRM sees on a replayed outcome table (the task's repository, and after each failed run its
cost, i.e. its turns) can reach on tasks it never saw.

A rule is a verifier cascade (agents spawned in a fixed order until one's run is shown resolved) with an
optional turn halt: stop after a failed run that took more than ``h`` turns (a long failed run may say
the task is hard for every agent; the HRM sees a run's cost, which is its turns times a known price).
A rule class picks, per fold, the rule with the best training score (resolved - μ·cost) either once for
all tasks (``global``: what best_cascade does) or once per repository (``repo``). Cross-fitting judges
every task once by a rule chosen without it, so the in-sample bounds' optimism is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Turn thresholds tried by the halting classes (a run's turns are 15-130 for the table's agents, 5th-95th
# percentile); NEVER is no halt.
HALT_TURNS = (15, 25, 35, 45, 60, 80, 100, 120)
NEVER = float("inf")
TIE = 1e-9  # per USD: among rules of equal training score, the cheaper (at μ 0 many orders resolve alike)
MU_GRID = tuple(float(m) for m in np.round(np.linspace(0.0, 0.4, 81), 4))  # per USD, for the frontier
TARGET = 0.95  # of the oracle's resolve-rate (issue 17 item 6)
COST_TARGET = 0.25  # of spawn_all's cost

Rule = tuple[tuple[int, ...], float]  # (agent indices in spawn order, halt after a failed run of > turns)


@dataclass(frozen=True)
class Runs:
    """One run per (task, agent): the table the rules are replayed on."""

    tasks: list[str]
    repos: list[str]  # the repository of each task
    resolved: np.ndarray  # (tasks, agents) bool
    usd: np.ndarray  # (tasks, agents) cost of the run
    turns: np.ndarray  # (tasks, agents)


@dataclass(frozen=True)
class RuleClass:
    name: str
    rules: list[Rule]
    per_repo: bool


def rule_classes(orders: Sequence[tuple[int, ...]], num_agents: int) -> list[RuleClass]:
    """The classes compared: cascades with the verifier (with and without turn halts, global and per
    repository) and, for the no-signal variant, one agent then halt (a cascade of one)."""
    cascades = [(o, NEVER) for o in orders]
    halting = cascades + [(o, float(h)) for o in orders if len(o) > 1 for h in HALT_TURNS]
    singles = [((k,), NEVER) for k in range(num_agents)]
    return [
        RuleClass("global_cascade", cascades, False),
        RuleClass("repo_cascade", cascades, True),
        RuleClass("repo_cascade_turn_halt", halting, True),
        RuleClass("global_cascade_turn_halt", halting, False),
        RuleClass("global_single", singles, False),
        RuleClass("repo_single", singles, True),
    ]


def rule_outcomes(runs: Runs, rules: Sequence[Rule]) -> tuple[np.ndarray, np.ndarray]:
    """(resolved, cost) of every rule on every task, each (rules, tasks): one pass per rule over its
    agents, vectorised over the tasks."""
    n = len(runs.tasks)
    solved, cost = np.zeros((len(rules), n)), np.zeros((len(rules), n))
    for i, (order, halt) in enumerate(rules):
        going = np.ones(n, dtype=bool)
        for a in order:
            cost[i] += np.where(going, runs.usd[:, a], 0.0)
            solved[i] += going & runs.resolved[:, a]
            going &= ~runs.resolved[:, a] & (runs.turns[:, a] <= halt)
    return solved, cost


def _cell_sums(values: np.ndarray, cell: np.ndarray, cells: int) -> np.ndarray:
    """Per rule, the sum over the tasks of each cell: (rules, cells)."""
    onehot = np.zeros((values.shape[1], cells))
    onehot[np.arange(values.shape[1]), cell] = 1.0
    return values @ onehot


def heldout_outcomes(
    solved: np.ndarray, cost: np.ndarray, group: np.ndarray, fold: np.ndarray, mus: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per price μ, per task: (resolved, cost) of the rule its group chose on the other folds at μ.

    A group with no task outside a fold (a repository of one task) takes, in that fold, the rule chosen on
    all training tasks: a policy meeting an unseen repository has nothing else to go on."""
    groups, folds = int(group.max()) + 1, int(fold.max()) + 1
    cell = group * folds + fold
    shape = (len(solved), groups, folds)
    # training sums of a (group, fold) cell: the group's tasks in the other folds (μ-free: summed once)
    s = _cell_sums(solved, cell, groups * folds).reshape(shape)
    c = _cell_sums(cost, cell, groups * folds).reshape(shape)
    train_s, train_c = s.sum(2, keepdims=True) - s, c.sum(2, keepdims=True) - c
    count = np.bincount(cell, minlength=groups * folds).reshape(groups, folds)
    unseen = (count.sum(1, keepdims=True) - count) == 0
    tasks = np.arange(solved.shape[1])
    out = []
    for mu in mus:
        score = train_s - (mu + TIE) * train_c
        pooled = score.sum(1, keepdims=True)  # every group's training tasks of that fold
        best = np.where(unseen, pooled.argmax(0), score.argmax(0))  # (groups, folds)
        rule = best[group, fold]
        out.append((solved[rule, tasks], cost[rule, tasks]))
    return out


def compare_classes(
    runs: Runs, orders: Sequence[tuple[int, ...]], fold: Sequence[int], lams: Sequence[float]
) -> dict[str, Any]:
    """Per rule class: the held-out score at each λ, its paired difference from the class's global
    counterpart, and the held-out frontier (resolve ÷ oracle, cost ÷ spawn_all) over ``MU_GRID``."""
    from hrm_spawn.trainers import stats

    fold_of = np.asarray(fold)
    repos = sorted(set(runs.repos))
    by_repo = np.asarray([repos.index(r) for r in runs.repos])
    one = np.zeros(len(runs.tasks), dtype=int)
    oracle = float(runs.resolved.any(1).mean())
    spawn_all = float(runs.usd.sum())
    out: dict[str, Any] = {}
    per_task: dict[str, list[np.ndarray]] = {}
    for rc in rule_classes(orders, runs.resolved.shape[1]):
        solved, cost = rule_outcomes(runs, rc.rules)
        group = by_repo if rc.per_repo else one
        held = heldout_outcomes(solved, cost, group, fold_of, lams)
        scores = [s - lam * c for lam, (s, c) in zip(lams, held, strict=True)]
        per_task[rc.name] = scores
        out[rc.name] = {
            "rules": len(rc.rules),
            "score": [float(x.mean()) for x in scores],
            "frontier": frontier(solved, cost, group, fold_of, oracle, spawn_all),
        }
    for name, base in (
        ("repo_cascade", "global_cascade"),
        ("repo_cascade_turn_halt", "global_cascade"),
        ("global_cascade_turn_halt", "global_cascade"),
        ("repo_single", "global_single"),
    ):
        out[name]["vs"] = base
        out[name]["minus_vs"] = [
            stats.paired_difference(a, b).to_dict()
            for a, b in zip(per_task[name], per_task[base], strict=True)
        ]
    return out


def frontier(
    solved: np.ndarray, cost: np.ndarray, group: np.ndarray, fold: np.ndarray, oracle: float, spawn_all: float
) -> dict[str, Any]:
    """Held-out (resolve ÷ oracle, cost ÷ spawn_all) at each μ of ``MU_GRID``, the least cost share with
    at least ``TARGET`` of the oracle (None: no μ reaches it) and the most resolve within ``COST_TARGET``."""
    n = solved.shape[1]
    held = heldout_outcomes(solved, cost, group, fold, MU_GRID)
    points = [
        (mu, float(s.sum() / n / oracle), float(c.sum() / spawn_all))
        for mu, (s, c) in zip(MU_GRID, held, strict=True)
    ]
    reach = [c for _, r, c in points if r >= TARGET]
    within = [r for _, r, c in points if c <= COST_TARGET]
    return {
        "mu": [p[0] for p in points],
        "resolve_vs_oracle": [p[1] for p in points],
        "cost_vs_spawn_all": [p[2] for p in points],
        "cost_at_target": min(reach) if reach else None,
        "resolve_within_cost_target": max(within) if within else None,
    }


def pareto(f: dict[str, Any]) -> list[tuple[float, float]]:
    """The frontier's (cost ÷ spawn_all, resolve ÷ oracle) points no other point beats on both, by cost."""
    points = sorted(
        zip(f["cost_vs_spawn_all"], f["resolve_vs_oracle"], strict=True), key=lambda p: (p[0], -p[1])
    )
    out: list[tuple[float, float]] = []
    for cost, resolve in points:
        if not out or resolve > out[-1][1]:
            out.append((cost, resolve))
    return out


def rules_table(result: dict[str, Any], lams: Sequence[float]) -> str:
    """Markdown: per class, the held-out score at each λ and the frontier's two target figures; then the
    paired differences from the global counterparts and each frontier's Pareto points."""
    head = "| class | " + " | ".join(f"λ {lam:.3f}" for lam in lams) + " | cost at 95 % | resolve at ≤ 25 % |"
    lines = [head, "|" + "---|" * (len(lams) + 3)]
    for name, r in result.items():
        f = r["frontier"]
        at = "-" if f["cost_at_target"] is None else f"{f['cost_at_target']:.3f}"
        within = "-" if f["resolve_within_cost_target"] is None else f"{f['resolve_within_cost_target']:.3f}"
        cells = " | ".join(f"{s:.3f}" for s in r["score"])
        lines.append(f"| {name} | {cells} | {at} | {within} |")
    for name, r in result.items():
        if "vs" in r:
            diffs = ", ".join(
                f"{lam:.3f}: {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                for lam, d in zip(lams, r["minus_vs"], strict=True)
            )
            lines.append(f"\n{name} - {r['vs']}: {diffs}")
    for name, r in result.items():
        points = ", ".join(f"{c:.3f}: {x:.3f}" for c, x in pareto(r["frontier"]))
        lines.append(f"\n{name} frontier (cost ÷ spawn_all: resolve ÷ oracle): {points}")
    return "\n".join(lines)
