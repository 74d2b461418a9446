"""Held-out decision quality over several train/held-out splits of one task set and store.

A 30-task set holds out 7-10 tasks, 2-5 of them resolvable: one split measures the draw as much as
the policy. This script trains one policy per split seed (replay, from a store a quickstart filled),
evaluates each on its own held-out side and prints, per variant of the config, the figures of the
issue's targets per fold and their mean. Variants compare policy inputs or trainer settings on the
same folds::

    python benchmarks/heldout_folds.py RUN_DIR/config.yaml --seeds 0 1 2 \\
        --variant features= --variant no-features=env.task_features=false

(``NAME=key=value,key=value``; an empty list is the config as it is; without CONFIG, the newest
``make quickstart`` run's). Each fold takes one training run (~2 min for the quickstart config on 2
cores). Writes ``results/heldout_folds_<task set>_hull_vs_best_cascade.json`` with every fold's
figures, ``--out DIR/heldout_folds.png``, and keeps the training runs under ``DIR/runs/`` (~20 MB each).

``--folds K`` cross-fits instead: per seed, the tasks are partitioned into K folds (envs/split.py
``assign_folds``), K policies each train on the other folds, and their held-out reports are pooled
into one report over every task (``hrm_spawn.trainers.report.pool_reports``), written to
``--out DIR/<variant>-seed<S>/report.{json,md}`` and ``pareto.png``. Every task is then judged once, by a
policy that never saw it: a held-out set as large as the task set.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import skip, write_result  # noqa: E402

from hrm_spawn.envs.config import load_config  # noqa: E402
from hrm_spawn.envs.paths import data_dir  # noqa: E402
from hrm_spawn.trainers.config import TrainConfig  # noqa: E402
from hrm_spawn.trainers.evaluate import evaluate  # noqa: E402
from hrm_spawn.trainers.report import pool_reports, write_report  # noqa: E402
from hrm_spawn.trainers.train import run_training  # noqa: E402

FIGURES = (
    "hrm_score",
    "best_other_score",
    "hrm_hull",
    "best_cascade_hull",
    "resolve_vs_oracle",
    "cost_vs_spawn_all",
    "sweep_resolve_vs_oracle",
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: expected NAME=key=value,... (NAME may not be empty)")
    return name, [o for o in overrides.split(",") if o]


def fold(config_path: str, overrides: list[str], work: Path) -> dict:
    """Train on one split's train side and evaluate on its held-out side: the report."""
    config = load_config(TrainConfig, config_path, overrides)
    ckpt = run_training(config, work, progress=False)
    return evaluate(ckpt, {}, "heldout", None, sweep=True)


def figures(report: dict, split_seed: int) -> dict[str, float | bool | None]:
    """The figures of the issue's targets from one (or one pooled) held-out report."""
    policies, targets = report["policies"], report["targets"]
    hull = report["lambda_sweep"]["hull_area"]
    return {
        "split_seed": split_seed,
        "heldout_tasks": report["meta"]["num_tasks"],
        "hrm_score": policies["hrm"]["score"],
        "best_other_score": targets["best_other_score"],
        "hrm_hull": hull["hrm"],
        "best_cascade_hull": hull["best_cascade"],
        "resolve_vs_oracle": targets["resolve_vs_oracle"],
        "cost_vs_spawn_all": targets["cost_vs_spawn_all"],
        "sweep_resolve_vs_oracle": targets.get("sweep_resolve_vs_oracle"),
        "beats_all_baselines": targets["beats_all_baselines"],
        "hull_beats_best_cascade": targets["hull_beats_best_cascade"],
        "quality_target_met": targets["quality_target_met"],
    }


def cross_fit(config_path: str, overrides: list[str], seed: int, folds: int, work: Path, out: Path) -> dict:
    """K policies, one per fold held out, pooled into one report over every task (written to ``out``)."""
    reports = []
    for k in range(folds):
        split = [f"env.split_seed={seed}", f"env.folds={folds}", f"env.fold={k}"]
        reports.append(fold(config_path, [*overrides, *split], work / f"fold{k}"))
        print(
            f"  fold {k}/{folds}: {reports[-1]['meta']['num_tasks']} held-out tasks, "
            f"score {reports[-1]['policies']['hrm']['score']:.3f}",
            flush=True,
        )
    pooled = pool_reports(reports)
    write_report(pooled, out)
    return {
        **figures(pooled, seed),
        "folds": [figures(r, seed) for r in reports],
        "report": str(out / "report.json"),
    }


def summary(folds: list[dict]) -> dict[str, float | int]:
    out = {f"mean_{k}": statistics.fmean(f[k] or 0.0 for f in folds) for k in FIGURES}
    for k in ("beats_all_baselines", "hull_beats_best_cascade", "quality_target_met"):
        out[f"folds_{k}"] = sum(bool(f[k]) for f in folds)
    return out


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(results)
    for i, name in enumerate(names):
        folds = results[name]["folds"]
        for f in folds:  # one line per fold joins the policy to the cascade it is compared with
            ax.plot(
                [i - 0.1, i + 0.1], [f["hrm_hull"], f["best_cascade_hull"]], color="0.7", lw=0.8, zorder=0
            )
        ax.scatter(
            [i - 0.1] * len(folds),
            [f["hrm_hull"] for f in folds],
            color="C0",
            label="hrm" if i == 0 else None,
        )
        ax.scatter(
            [i + 0.1] * len(folds),
            [f["best_cascade_hull"] for f in folds],
            color="C1",
            marker="x",
            label="best_cascade" if i == 0 else None,
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("held-out area under the cost-quality hull")
    ax.set_title("one point per split seed (lines join a fold's pair)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def latest_quickstart_config() -> Path | None:
    """The config of the newest full quickstart run under the data dir (what ``make bench`` uses)."""
    runs = sorted(
        (data_dir() / "quickstart" / "full").glob("run-*/config.yaml"), key=lambda p: p.stat().st_mtime
    )
    return runs[-1] if runs else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        help="a train config YAML (default: the newest `make quickstart` run's)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant", action="append", default=None, help="NAME=key=value,... (repeatable)")
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="K >= 2: cross-fit K folds per seed and pool them (default: one split per seed)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="directory for the plot, pooled reports and training runs (default: a temp dir)",
    )
    args = parser.parse_args()
    if args.config is None:
        found = latest_quickstart_config()
        if found is None:
            skip(f"heldout_folds: no quickstart run under {data_dir()}; run `make quickstart` first")
        args.config = str(found)
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds must be 0 (one split per seed) or >= 2")
    variants = dict(parse_variant(v) for v in (args.variant or ["config="]))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="folds-plot-"))
    results: dict[str, dict] = {}
    for name, overrides in variants.items():
        folds = []
        for seed in args.seeds:
            work = out / "runs" / name / f"seed{seed}"  # the checkpoints stay, for a closer look
            if args.folds:
                folds.append(
                    cross_fit(args.config, overrides, seed, args.folds, work, out / f"{name}-seed{seed}")
                )
            else:
                folds.append(figures(fold(args.config, [*overrides, f"env.split_seed={seed}"], work), seed))
            f = folds[-1]
            print(
                f"{name} seed {seed}: held-out {f['heldout_tasks']} tasks, score {f['hrm_score']:.3f} "
                f"(best other {f['best_other_score']:.3f}), hull {f['hrm_hull']:.3f} "
                f"(best_cascade {f['best_cascade_hull']:.3f})",
                flush=True,
            )
        results[name] = {"overrides": overrides, "folds": folds, **summary(folds)}
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "heldout_folds.png")
    print(
        f"{'variant':16} {'score':>7} {'other':>7} {'hull':>7} {'cascade':>7} {'res/or':>7} {'cost/sa':>7} "
        f"{'sweep':>7}  hull>bc"
    )
    for name, r in results.items():
        print(
            f"{name:16} "
            + " ".join(f"{r['mean_' + k]:7.3f}" for k in FIGURES)
            + f"  {r['folds_hull_beats_best_cascade']}/{len(r['folds'])}"
        )
    first = results[next(iter(results))]
    tasks = Path(load_config(TrainConfig, args.config).env.tasks).stem
    kind = f"heldout_cv{args.folds}" if args.folds else "heldout_folds"
    write_result(
        f"{kind}_{tasks}_hull_vs_best_cascade",
        first["mean_hrm_hull"] / max(first["mean_best_cascade_hull"], 1e-9),
        "ratio of mean held-out hull areas (first variant)",
        goal=1.0,
        higher_is_better=True,
        meta={
            "config": args.config,
            "seeds": args.seeds,
            "folds": args.folds,
            "variants": results,
            "plot": str(out / "heldout_folds.png"),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
