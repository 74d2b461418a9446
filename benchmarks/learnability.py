"""How much of a task set's spawning value a perfectly fitted policy keeps on new tasks: the empirical-Bayes tree.

The empirical-Bayes tree is the best adaptive policy when a task is drawn from the training tasks: at
each step it knows which training tasks are still consistent with what it has seen (their failure
profile, then each run's visible result) and takes the action with the best expected return over
them, solved exactly by dynamic programming over those histories. It is what a perfectly fitted
learner would do, the reference for what training on these tasks can give:

* in sample (prior = every task, judged on the same tasks) it shows the value the observations hold;
* cross-fitted (prior = the other folds, judged on the held-out fold, pooled over the folds) it shows
  how much of that value carries over to tasks the policy has not seen.

The gap between the two is a property of the task set (how many tasks, how alike), not of the HRM or
its trainer; when the held-out tree loses to a fixed cascade, more training tasks are what helps.
Run on a quickstart's config::

    python benchmarks/learnability.py RUN_DIR/config.yaml [--folds 5]

Writes ``results/learnability_<task set>.json``: the held-out tree's hull area ÷ its in-sample hull area
(the share of the learnable value that carries over), every figure in meta. ``--reveal-kind`` tells
the tree each task's hidden modifier kind before it spends (``..._kind_revealed.json``): what better
task observations could buy at most.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import skip, write_result  # noqa: E402
from heldout_folds import latest_quickstart_config  # noqa: E402

from hrm_spawn.envs.config import load_config  # noqa: E402
from hrm_spawn.trainers.bayes_tree import kind_key, run_tree  # noqa: E402
from hrm_spawn.trainers.config import TrainConfig  # noqa: E402
from hrm_spawn.trainers.evaluate import (  # noqa: E402
    CascadeTable,
    ReplaySet,
    baseline_records,
    replay_sets,
    sweep_lambdas,
    sweep_records,
)
from hrm_spawn.trainers.report import build_report, pool_reports, summarize  # noqa: E402


def report_for(
    train: ReplaySet, test: ReplaySet, lam_range: tuple[float, float], reveal_kind: bool = False
) -> dict:
    """A report whose "hrm" row is the tree (so the targets are computed for it), with every baseline, at
    the middle of the config's λ range and swept over it (as the quickstart reports)."""
    lam = (lam_range[0] + lam_range[1]) / 2
    cascades = CascadeTable(train)
    grouping = {"group_key": kind_key, "min_group": 2} if reveal_kind else {}

    def tree(lam: float) -> list:
        return run_tree(train, test, lam, **grouping)

    policies = {
        name: summarize(recs, lam)
        for name, recs in {"hrm": tree(lam), **baseline_records(train, test, lam, cascades)}.items()
    }
    sweep = sweep_records(tree, train, test, cascades, sweep_lambdas(*lam_range))
    return build_report(policies, lam, {"num_tasks": len(test.tasks)}, sweep)


def per_lambda(report: dict) -> list[dict]:
    """At each swept λ: the tree's score and the best non-oracle baseline's (name and score)."""
    points = report["lambda_sweep"]["points"]
    rows = []
    for j, mine in enumerate(points["hrm"]):
        others = {n: p[j]["score"] for n, p in points.items() if n not in ("hrm", "oracle")}
        best = max(others, key=others.__getitem__)
        rows.append({"lam": mine["lam"], "tree": mine["score"], "best_other": best, "other": others[best]})
    return rows


def figures(report: dict) -> dict:
    pol, hull, targets = report["policies"], report["lambda_sweep"]["hull_area"], report["targets"]
    return {
        "tree_score": pol["hrm"]["score"],
        "tree_hull": hull["hrm"],
        "best_other_score": targets["best_other_score"],
        "best_cascade_hull": hull["best_cascade"],
        "oracle_hull": hull["oracle"],
        "sweep_resolve_vs_oracle": targets.get("sweep_resolve_vs_oracle"),
        "tree_beats_all_baselines": targets["beats_all_baselines"],
        "tree_hull_beats_best_cascade": targets["hull_beats_best_cascade"],
        "per_lambda": per_lambda(report),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "config", nargs="?", default=None, help="a train config YAML (default: the newest quickstart run's)"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="split seed of the folds")
    parser.add_argument(
        "--reveal-kind", action="store_true", help="tell the tree each task's hidden modifier kind"
    )
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be >= 2")
    if args.config is None:
        found = latest_quickstart_config()
        if found is None:
            skip("learnability: no quickstart run under the data dir; run `make quickstart` first")
        args.config = str(found)
    config = load_config(TrainConfig, args.config)
    env = config.env.model_copy(update={"split": "all"})
    lam_range = (env.lam, env.lam) if isinstance(env.lam, float) else tuple(env.lam)
    _, everything = replay_sets(env, "all")
    in_sample = figures(report_for(everything, everything, lam_range, args.reveal_kind))
    reports = []
    for k in range(args.folds):
        fold_env = env.model_copy(update={"folds": args.folds, "fold": k, "split_seed": args.seed})
        reports.append(report_for(*replay_sets(fold_env, "heldout"), lam_range, args.reveal_kind))
    heldout = figures(pool_reports(reports))
    print(
        f"{'':20} {'score':>7} {'best other':>10} {'hull':>7} {'cascade':>7} {'oracle':>7} {'sweep res/or':>12}"
    )
    for name, f in (("in sample", in_sample), (f"held out ({args.folds} folds)", heldout)):
        print(
            f"{name:20} {f['tree_score']:7.3f} {f['best_other_score']:10.3f} {f['tree_hull']:7.3f} "
            f"{f['best_cascade_hull']:7.3f} {f['oracle_hull']:7.3f} {f['sweep_resolve_vs_oracle'] or 0:12.3f}"
        )
    print("held out, per λ: tree score vs the best other policy's")
    for row in heldout["per_lambda"]:
        print(f"  λ {row['lam']:.4f}: {row['tree']:7.3f} vs {row['other']:7.3f} ({row['best_other']})")
    tasks = Path(config.env.tasks).stem
    write_result(
        f"learnability_{tasks}" + ("_kind_revealed" if args.reveal_kind else ""),
        heldout["tree_hull"] / max(in_sample["tree_hull"], 1e-9),
        "held-out ÷ in-sample hull area of the empirical-Bayes tree",
        goal=None,
        higher_is_better=True,
        meta={
            "config": args.config,
            "tasks": len(everything.tasks),
            "folds": args.folds,
            "split_seed": args.seed,
            "lambda": sum(lam_range) / 2,
            "lambda_range": list(lam_range),
            "reveal_kind": args.reveal_kind,
            "in_sample": in_sample,
            "heldout": heldout,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
