"""``hrm-spawn crossfit CONFIG --folds K --out DIR``: every task judged once, with bootstrap intervals.

The task set is partitioned into K folds (envs/split.py ``assign_folds``, by function group); K policies
each train on the other folds and are evaluated on their own (replay, the checkpoint's λ and sweep). The
K held-out reports are pooled into one over every task (``trainers.report.pool_reports``), and each
policy's per-task outcomes are kept, so that every figure gets a bootstrap 95 % interval over the tasks
(trainers/stats.py) and the HRM is compared with every baseline by the paired per-task difference, on
the score at λ and on the λ-sweep hull area. The summary says in words whether the HRM beat, tied with
or lost to each baseline: "beat" only when the whole interval of the difference is above zero.

Writes DIR/report.{json,md}, DIR/pareto.png (the pooled report, with an ``intervals`` section),
DIR/crossfit.json (per-fold figures, per-task outcomes, every interval) and the K training runs under
DIR/fold<k>/. A fold whose checkpoint is finished is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrm_spawn.trainers import stats

RESAMPLES = 2000


def fold_config(train_cfg: Any, folds: int, fold: int, seed: int | None = None) -> Any:
    """The train config for fold ``fold`` of ``folds``: held-out side = that fold, train side = the rest."""
    from hrm_spawn.envs.config import build_config
    from hrm_spawn.trainers.config import TrainConfig

    data = train_cfg.model_dump()
    env = {**train_cfg.env.model_dump(mode="json", exclude_unset=True), "folds": folds, "fold": fold}
    if seed is not None:
        env["split_seed"] = seed
    return build_config(TrainConfig, {**data, "env": env})


# ---- per-task outcomes ---------------------------------------------------------------------------------


def task_outcomes(ckpt: Path, lams: Sequence[float]) -> dict[str, Any]:
    """Per policy, per λ, per held-out task: mean pass-rate, cost and resolved (a task's repeats averaged).

    Uses the evaluation's own building blocks (trainers/evaluate.py), so the records are the report's.
    """
    import torch

    from hrm_spawn.trainers.checkpoint import load_train_config
    from hrm_spawn.trainers.evaluate import (
        CascadeTable,
        baseline_records,
        env_replay_sets,
        load_actor,
        policy_records,
    )

    config = load_train_config(ckpt)
    train, test = env_replay_sets(config, "heldout")
    make_actor = load_actor(ckpt, test.observation_space, test.spec.layout.n, torch.device("cpu"), config)
    cascades = CascadeTable(train)
    ids = [t.instance_id for t in test.tasks]
    kinds = [list(getattr(t, "modifier_kinds", None) or []) for t in test.tasks]
    per: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for lam in lams:
        records = {
            "hrm": policy_records(make_actor, test, lam),
            **baseline_records(train, test, lam, cascades, config.seed),
        }
        for name, recs in records.items():
            by_task: dict[str, list[Any]] = defaultdict(list)
            for rec in recs:
                by_task[rec.instance_id].append(rec)
            for key, attr in (("pass_rate", "pass_rate"), ("cost", "cost"), ("resolved", "resolved")):
                per[name][key].append([float(np.mean([getattr(r, attr) for r in by_task[i]])) for i in ids])
    return {
        "tasks": ids,
        "kinds": kinds,
        "lams": list(lams),
        "policies": {n: dict(v) for n, v in per.items()},
    }


def pool_outcomes(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-task outcomes of several folds side by side (their task sets are disjoint)."""
    lams = parts[0]["lams"]
    if any(p["lams"] != lams for p in parts):
        raise ValueError("pool_outcomes: the folds were evaluated at different λs")
    names = list(parts[0]["policies"])
    pooled: dict[str, Any] = {"tasks": [], "kinds": [], "lams": lams, "policies": {}}
    for part in parts:
        pooled["tasks"] += part["tasks"]
        pooled["kinds"] += part["kinds"]
    for name in names:
        pooled["policies"][name] = {
            key: [sum((p["policies"][name][key][j] for p in parts), []) for j in range(len(lams))]
            for key in ("pass_rate", "cost", "resolved")
        }
    return pooled


# ---- intervals -----------------------------------------------------------------------------------------


def _arrays(outcomes: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """policy -> {pass_rate, cost, resolved}: arrays of shape (λs, tasks)."""
    return {
        name: {k: np.asarray(v, dtype=float) for k, v in data.items()}
        for name, data in outcomes["policies"].items()
    }


def _hulls(arrays: dict[str, dict[str, np.ndarray]], idx: np.ndarray) -> dict[str, float]:
    """Every policy's sweep hull area on the tasks ``idx`` (max cost shared, as in the report)."""
    from hrm_spawn.trainers.report import hull_area

    points = {
        name: list(
            zip(a["cost"][:, idx].mean(axis=1)[1:], a["pass_rate"][:, idx].mean(axis=1)[1:], strict=True)
        )
        for name, a in arrays.items()
    }
    max_cost = max(c for pts in points.values() for c, _ in pts)
    return {name: hull_area(pts, max_cost) for name, pts in points.items()}


def intervals(outcomes: dict[str, Any], seed: int = 0, resamples: int = RESAMPLES) -> dict[str, Any]:
    """Bootstrap intervals over the tasks: each policy's score, resolve-rate, cost (at the first λ) and
    hull (over the rest), and the HRM's paired differences with every other policy. Every figure is
    computed on the same resamples of the tasks, so the differences are paired."""
    lam = outcomes["lams"][0]
    arrays = _arrays(outcomes)
    names = list(arrays)
    n = len(outcomes["tasks"])
    sweep = len(outcomes["lams"]) > 1
    score = {name: a["pass_rate"][0] - lam * a["cost"][0] for name, a in arrays.items()}
    out: dict[str, Any] = {
        "lambda": lam,
        "num_tasks": n,
        "resamples": resamples,
        "level": stats.DEFAULT_LEVEL,
    }
    hulls: dict[str, tuple[float, np.ndarray]] = {}
    if sweep:  # one pass over the resamples for every policy's hull (the costly figure)
        idx = stats.resample_indices(n, resamples, seed)
        full = _hulls(arrays, np.arange(n))
        rows = [_hulls(arrays, row) for row in idx]
        hulls = {name: (full[name], np.array([r[name] for r in rows])) for name in names}
    per_policy = {}
    for name, a in arrays.items():
        entry = {
            "score": stats.mean_interval(score[name], resamples, seed).to_dict(),
            "resolve_rate": stats.mean_interval(a["resolved"][0], resamples, seed).to_dict(),
            "mean_cost": stats.mean_interval(a["cost"][0], resamples, seed).to_dict(),
        }
        if sweep:
            entry["hull"] = stats.percentile_interval(*hulls[name]).to_dict()
        per_policy[name] = entry
    out["policies"] = per_policy
    out["hrm_vs"] = _versus("hrm", score, hulls, names, resamples, seed)
    if "oracle" in score:  # what this task set can show at all: the oracle knows every outcome
        out["oracle_vs"] = _versus("oracle", score, hulls, names, resamples, seed)
    return out


def _versus(
    first: str,
    score: dict[str, np.ndarray],
    hulls: dict[str, tuple[float, np.ndarray]],
    names: list[str],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """``first``'s paired differences with every other policy (the oracle's: with every baseline) on the
    score and, over a sweep, the hull."""
    skip = {first, "hrm"} if first == "oracle" else {first}
    versus = {}
    for name in names:
        if name in skip:
            continue
        diff = stats.paired_difference(score[first], score[name], resamples, seed)
        entry = {"score": diff.to_dict(), "score_verdict": stats.verdict(diff)}
        if hulls:
            (f_est, f_samples), (o_est, o_samples) = hulls[first], hulls[name]
            hull_diff = stats.percentile_interval(f_est - o_est, f_samples - o_samples)
            entry.update(hull=hull_diff.to_dict(), hull_verdict=stats.verdict(hull_diff))
        versus[name] = entry
    return versus


def _iv(d: dict[str, float]) -> str:
    return str(stats.Interval(d["estimate"], d["low"], d["high"], d["level"]))


def interval_table(iv: dict[str, Any]) -> str:
    """Markdown: each policy's figures with their intervals, and the HRM's paired differences."""
    hull = any("hull" in p for p in iv["policies"].values())
    head = "| policy | score | resolve_rate | mean_cost |" + (" hull |" if hull else "")
    head += " hrm − policy: score | verdict |" + (" hrm − policy: hull | verdict |" if hull else "")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, p in iv["policies"].items():
        cells = [name, _iv(p["score"]), _iv(p["resolve_rate"]), _iv(p["mean_cost"])]
        if hull:
            cells.append(_iv(p["hull"]))
        vs = iv["hrm_vs"].get(name)
        cells += [_iv(vs["score"]), vs["score_verdict"]] if vs else ["", ""]
        if hull:
            cells += [_iv(vs["hull"]), vs["hull_verdict"]] if vs else ["", ""]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def summary_line(iv: dict[str, Any]) -> str:
    """In words: which baselines the HRM beat, tied with or lost to (score at λ; hull over the sweep)."""
    parts = []
    for figure in ("score", "hull"):
        key = f"{figure}_verdict"
        groups: dict[str, list[str]] = defaultdict(list)
        for name, vs in iv["hrm_vs"].items():
            if key in vs and name != "oracle":
                groups[vs[key]].append(name)
        if not groups:
            continue
        words = "; ".join(f"{verdict} {', '.join(names)}" for verdict, names in sorted(groups.items()))
        where = f"score at λ = {iv['lambda']:.4g}" if figure == "score" else "λ-sweep hull"
        parts.append(f"{where}: the HRM {words}")
    return (
        f"Cross-fitted over {iv['num_tasks']} tasks (each held out once; paired bootstrap, "
        f"{iv['level']:.0%} intervals, non-oracle baselines): " + ". ".join(parts) + "." + _ceiling(iv)
    )


def _ceiling(iv: dict[str, Any]) -> str:
    """The baselines not even the oracle beats on these tasks: no policy can be shown to beat them here."""
    parts = []
    for figure in ("score", "hull"):
        unbeaten = [
            n for n, vs in iv.get("oracle_vs", {}).items() if vs.get(f"{figure}_verdict") == "tied with"
        ]
        if unbeaten:
            where = "score" if figure == "score" else "hull"
            parts.append(f"{where}: {', '.join(unbeaten)}")
    if not parts:
        return ""
    return (
        f" Even the oracle (every outcome known) only ties with these on {iv['num_tasks']} tasks "
        f"({'; '.join(parts)}): beating them cannot be shown on this task set; more tasks can."
    )


# ---- the driver ----------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[crossfit] {message}", file=sys.stderr, flush=True)


def _train_fold(cfg: Any, run_dir: Path) -> Path:
    from hrm_spawn.trainers.checkpoint import latest_checkpoint
    from hrm_spawn.trainers.train import run_training

    done = latest_checkpoint(run_dir)
    if (
        done is not None
        and cfg.algo == "act_q"
        and json.loads((done / "meta.json").read_text()).get("iteration") == cfg.act_q.iterations
    ):
        return done
    return run_training(cfg, run_dir, resume=done is not None, progress=False)


def _timed_fold(cfg: Any, run_dir: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    ckpt = _train_fold(cfg, run_dir)
    return ckpt, time.perf_counter() - start


def train_folds(configs: list[Any], out: Path, workers: int = 1) -> list[tuple[Path, float]]:
    """Each fold's finished checkpoint and its training seconds. With ``workers`` > 1 the folds train at
    once in that many processes (spawned: a forked torch can hang in its thread pools); each fold is
    seeded by its own config, so the checkpoints are the ones a sequential run makes."""
    dirs = [out / f"fold{k}" for k in range(len(configs))]
    if workers <= 1 or len(configs) == 1:
        return [_timed_fold(cfg, d) for cfg, d in zip(configs, dirs, strict=True)]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(configs)), mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_timed_fold, configs, dirs))


def crossfit(
    train_cfg: Any,
    folds: int,
    out: Path,
    lam: float | None = None,
    seed: int | None = None,
    resamples: int = RESAMPLES,
    workers: int = 1,
) -> dict[str, Any]:
    """Train (``workers`` folds at once) and evaluate one policy per fold, pool, add intervals; returns
    the pooled report."""
    from hrm_spawn.trainers.evaluate import evaluate, sweep_lambdas
    from hrm_spawn.trainers.report import pool_reports, write_report

    if folds < 2:
        raise ValueError(f"crossfit needs folds >= 2, got {folds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lam_range = train_cfg.lam
    lam = (lam_range.low + lam_range.high) / 2 if lam is None else lam
    lams = [lam, *sweep_lambdas(lam_range.low, lam_range.high)]
    configs = [fold_config(train_cfg, folds, k, seed) for k in range(folds)]
    if workers > 1:
        _say(f"training {folds} folds, {min(workers, folds)} at once")
    trained = train_folds(configs, out, workers)
    reports, outcomes, fold_rows = [], [], []
    for k, (ckpt, train_s) in enumerate(trained):
        reports.append(evaluate(ckpt, {}, "heldout", lam, sweep=True))
        outcomes.append(task_outcomes(ckpt, lams))
        hrm = reports[-1]["policies"]["hrm"]
        fold_rows.append(
            {
                "fold": k,
                "tasks": reports[-1]["meta"]["num_tasks"],
                "score": hrm["score"],
                "train_s": round(train_s, 1),
            }
        )
        _say(
            f"fold {k + 1}/{folds}: {fold_rows[-1]['tasks']} held-out tasks, hrm score {hrm['score']:.3f}, "
            f"trained in {train_s:.0f}s"
        )
    pooled = pool_reports(reports)
    task_data = pool_outcomes(outcomes)
    iv = intervals(task_data, seed=train_cfg.seed, resamples=resamples)
    pooled["intervals"] = iv
    pooled["meta"]["crossfit"] = {"folds": folds, "split_seed": seed, "per_fold": fold_rows}
    write_report(pooled, out)
    (out / "crossfit.json").write_text(
        json.dumps({"folds": fold_rows, "outcomes": task_data, "intervals": iv}, indent=2) + "\n",
        encoding="utf-8",
    )
    append_intervals(pooled, out / "report.md")
    return pooled


def append_intervals(report: dict[str, Any], md: Path) -> None:
    """Add the interval table and the summary line to a written report.md."""
    iv = report["intervals"]
    text = f"\n## Bootstrap intervals (cross-fitted)\n\n{interval_table(iv)}\n\n{summary_line(iv)}\n"
    with Path(md).open("a", encoding="utf-8") as fh:
        fh.write(text)


def cli_crossfit(args: argparse.Namespace) -> int:
    from hrm_spawn.envs.config import ConfigError, load_config
    from hrm_spawn.trainers.config import TrainConfig
    from hrm_spawn.trainers.report import comparison_table

    try:
        config = load_config(TrainConfig, args.config, args.overrides)
        report = crossfit(
            config, args.folds, Path(args.out), args.lam, args.seed, args.resamples, max(1, args.workers)
        )
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"hrm-spawn crossfit: {exc}", file=sys.stderr)
        return 2
    print(comparison_table(report))
    print(interval_table(report["intervals"]))
    print(summary_line(report["intervals"]))
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0
