"""How many tasks a cross-fitted result needs before a difference can show (``crossfit.json`` in, counts out).

A quickstart result judges each policy on a few dozen tasks, and its verdicts come from paired bootstrap
intervals over those tasks. Whether *any* policy could be shown to beat a baseline there is a property
of the task set, not of the policy: the oracle (every outcome known) is the best any policy can do, so
where even the oracle's interval against a baseline includes zero, no policy can beat that baseline on
that task set. This script asks, for task sets of N tasks drawn like the given ones (the per-task
outcomes of a ``crossfit.json``, resampled with replacement), how often the oracle's (or the HRM's)
paired 95 % interval of the score difference at the report's λ lies above zero, per baseline.

    python benchmarks/task_set_power.py RUN_DIR/crossfit.json [--sizes 24 48 96] [--draws 200]

(the quickstart writes it under its output folder: ``$HRM_SPAWN_HOME/quickstart/full/run-*/``). Prints a table and writes
``task_set_power.json`` (record ``tasks_for_oracle_to_beat_every_baseline``: the smallest size at which
the oracle beats every non-oracle baseline in at least ``--power`` of the draws) to the results dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import skip, write_result  # noqa: E402

SIZES = (24, 48, 72, 96, 120, 180, 240)


def score_rows(outcomes: dict) -> tuple[list[str], np.ndarray]:
    """Policy names and their per-task scores at the first λ (pass-rate − λ·cost): (policies, tasks)."""
    lam = outcomes["lams"][0]
    names = list(outcomes["policies"])
    rows = [
        np.asarray(p["pass_rate"][0], float) - lam * np.asarray(p["cost"][0], float)
        for p in (outcomes["policies"][n] for n in names)
    ]
    return names, np.stack(rows)


def beat_share(
    diffs: np.ndarray, size: int, draws: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Per row of ``diffs`` (baseline, task): the share of ``draws`` task sets of ``size`` tasks on which
    the 95 % paired bootstrap interval of the mean difference lies above zero."""
    wins = np.zeros(len(diffs))
    for _ in range(draws):
        task_set = diffs[:, rng.integers(0, diffs.shape[1], size)]  # a new task set like the old one
        boot = task_set[:, rng.integers(0, size, (resamples, size))].mean(axis=2)  # (baseline, resample)
        wins += np.percentile(boot, 2.5, axis=1) > 0
    return wins / draws


def power_table(
    outcomes: dict, first: str, sizes: list[int], draws: int, resamples: int, seed: int
) -> dict[str, dict[int, float]]:
    """baseline -> size -> share of task sets on which ``first`` beats it (non-oracle baselines)."""
    names, scores = score_rows(outcomes)
    others = [n for n in names if n not in (first, "oracle", "hrm")]
    diffs = scores[names.index(first)] - scores[[names.index(n) for n in others]]
    rng = np.random.default_rng(seed)
    shares = {size: beat_share(diffs, size, draws, resamples, rng) for size in sizes}
    return {name: {size: float(shares[size][i]) for size in sizes} for i, name in enumerate(others)}


def smallest_size(table: dict[str, dict[int, float]], power: float) -> int | None:
    """The smallest size at which every baseline is beaten in at least ``power`` of the draws."""
    sizes = sorted(next(iter(table.values())))
    return next((s for s in sizes if all(row[s] >= power for row in table.values())), None)


def print_table(first: str, table: dict[str, dict[int, float]], tasks: int) -> None:
    sizes = sorted(next(iter(table.values())))
    print(f"\nshare of task sets on which {first} beats the baseline (drawn from {tasks} tasks):")
    print("| baseline | " + " | ".join(f"N={s}" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[s]:.2f}" for s in sizes) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("crossfit", nargs="?", help="a crossfit.json (hrm-spawn crossfit / quickstart)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--draws", type=int, default=200, help="task sets drawn per size")
    ap.add_argument("--resamples", type=int, default=500, help="bootstrap resamples per task set")
    ap.add_argument("--power", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.crossfit or not Path(args.crossfit).is_file():
        skip("task_set_power: give a crossfit.json (run make quickstart or hrm-spawn crossfit first)")
    outcomes = json.loads(Path(args.crossfit).read_text(encoding="utf-8"))["outcomes"]
    tasks = len(outcomes["tasks"])
    tables = {
        first: power_table(outcomes, first, args.sizes, args.draws, args.resamples, args.seed)
        for first in ("oracle", "hrm")
    }
    for first, table in tables.items():
        print_table(first, table, tasks)
    needed = smallest_size(tables["oracle"], args.power)
    print(
        f"\nthe oracle beats every non-oracle baseline in ≥ {args.power:.0%} of task sets from N = {needed}"
    )
    write_result(  # -1: not reached at the largest size tried
        "tasks_for_oracle_to_beat_every_baseline",
        float(needed) if needed is not None else -1.0,
        "tasks",
        None,
        False,
        {
            "source": str(args.crossfit),
            "source_tasks": tasks,
            "lambda": outcomes["lams"][0],
            "power": args.power,
            "draws": args.draws,
            "tables": {
                f: {b: {str(s): v for s, v in row.items()} for b, row in t.items()} for f, t in tables.items()
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
