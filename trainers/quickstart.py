"""hrm-spawn quickstart [--tiny] [--out DIR]: the main job on a fresh machine, with no arguments.

1. tasks:    build (or reuse) the default tinydb task set at data_dir()/tasks/tinydb.jsonl (hrm_spawn.envs.build)
2. collect:  run the agents in the local SWE-ReX runtime on every task, filling the outcome store
             (worker processes, progress; resumes: finished runs are skipped)
3. train:    ACT Q-learning of hrm-tiny in replay mode; with ``eval.folds`` = K >= 2 (the default) one
             policy per fold, each trained on the other folds (trainers/crossfit.py)
4. evaluate: each policy vs every baseline and the oracle on its held-out fold, with a λ sweep; the K
             reports pooled into one over every task, with bootstrap 95 % intervals and the HRM's paired
             differences with each baseline (``eval.folds: 0``: one train/held-out split, as before)
5. report:   DIR/report.json, DIR/report.md, DIR/pareto.png (+ DIR/crossfit.json); the table is printed

Every stage reuses what an earlier run left (tasks file, store, a finished checkpoint), so a second
run, or one after an interruption, only does what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from hrm_spawn.envs.collect import BudgetOverrides
from hrm_spawn.envs.config import StrictModel, build_config, dump_config, load_config
from hrm_spawn.envs.paths import data_dir, runs_dir, stores_dir, tasks_dir


class TaskSetConfig(StrictModel):
    source: str = "pypi:tinydb==4.9.0"
    file: str | None = None  # default: data_dir()/tasks/<name>.jsonl
    name: str = "tinydb"
    max_bugs: int = Field(48, ge=1)
    combined: int = Field(12, ge=0)
    seed: int = 0


class CollectConfig(StrictModel):
    workers: int | None = None  # default: every core
    depth: int = Field(1, ge=0)
    budget: BudgetOverrides = Field(default_factory=BudgetOverrides)


class EvalConfig(StrictModel):
    lam: float | None = None  # default: the middle of the training λ range
    sweep: bool = True
    # K >= 2: cross-fit (every task held out once, bootstrap intervals); 0: one split by heldout_fraction
    folds: int = Field(3, ge=0)
    resamples: int = Field(2000, ge=100)  # bootstrap resamples for the intervals
    # Folds trained at once (one process each; null: one per core). They are independent and seeded, so
    # this changes the wall time only.
    fold_workers: int | None = Field(None, ge=1)


class QuickstartConfig(StrictModel):
    tasks: TaskSetConfig = Field(default_factory=TaskSetConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    # A TrainConfig as a mapping (preset trainers/act_q by default); env.tasks/store/agents are filled in.
    train: dict[str, Any] = Field(default_factory=dict)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    store: str | None = None  # default: data_dir()/stores/<tasks.name>.sqlite


def _say(message: str) -> None:
    print(f"[quickstart] {message}", file=sys.stderr, flush=True)


def ensure_tasks(cfg: TaskSetConfig, workers: int | None) -> Path:
    path = Path(cfg.file).expanduser() if cfg.file else tasks_dir() / f"{cfg.name}.jsonl"
    if path.is_file() and path.stat().st_size > 0:
        _say(f"tasks: reusing {path}")
        return path
    from hrm_spawn.envs.build import build_tasks

    _say(f"tasks: building from {cfg.source} into {path} (max {cfg.max_bugs} bugs + {cfg.combined} combined)")
    report = build_tasks(
        cfg.source, path, max_bugs=cfg.max_bugs, combined=cfg.combined, seed=cfg.seed, workers=workers
    )
    if not report.tasks:
        raise RuntimeError(f"tasks: the build of {cfg.source} kept no valid task (see {path}.report.json)")
    return path


def run_collect(tasks_path: Path, store: Path, env: dict[str, Any], cfg: CollectConfig) -> None:
    from hrm_spawn.envs.collect import collect
    from hrm_spawn.envs.spawn_env import load_env_config
    from hrm_spawn.envs.tasks import load_tasks

    env_cfg = load_env_config(env)
    tasks = load_tasks(str(tasks_path)).tasks
    _say(
        f"collect: {len(tasks)} tasks x {len(env_cfg.agents)} agents ({', '.join(env_cfg.agents)}) -> {store}"
    )
    start = time.perf_counter()
    counts = collect(
        tasks,
        env_cfg.agents,
        store,
        workers=cfg.workers or _cores(),
        seeds=env_cfg.seeds_per_agent,
        depth=cfg.depth,
        sandbox_config=env_cfg.sandbox,
        budget=cfg.budget,
        delegate_seeds=env_cfg.delegate_seeds,
        progress=True,
    )
    _say(
        f"collect: {counts.ran} runs, {counts.skipped} reused, {counts.failed} failed "
        f"in {time.perf_counter() - start:.0f}s"
    )


def _cores() -> int:
    import os

    return os.cpu_count() or 1


class StageTimer:
    """Wall seconds per stage, printed as one summary line and kept in the report's meta."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._mark = self.start

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._mark, 1)
        self._mark = now

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)

    def summary(self) -> str:
        parts = ", ".join(f"{name} {sec:.0f}s" for name, sec in self.seconds.items())
        return f"stages: {parts}; total {self.total:.0f}s"


def _finished(ckpt: Path | None, cfg: Any) -> bool:
    """Whether a run's latest checkpoint is its last one (ACT Q: iterations; PPO: timesteps)."""
    if ckpt is None:
        return False
    meta = json.loads((ckpt / "meta.json").read_text())
    if cfg.algo == "ppo":
        return int(meta.get("num_timesteps", 0)) >= cfg.ppo.total_timesteps
    return meta.get("iteration") == cfg.act_q.iterations


def run_dir_for(train_cfg: Any, out: Path) -> Path:
    """``out/run-<digest>``, named after the config and the observation layout, so neither a changed
    config nor a checkpoint made for other features is ever resumed or reused."""
    from hrm_spawn.envs.features import layout

    digest = hashlib.sha256((dump_config(train_cfg) + layout()).encode()).hexdigest()[:8]
    return out / f"run-{digest}"


def _train(train_cfg: Any, out: Path) -> Path:
    from hrm_spawn.trainers.checkpoint import latest_checkpoint
    from hrm_spawn.trainers.train import run_training

    run_dir = run_dir_for(train_cfg, out)
    done = latest_checkpoint(run_dir)
    if _finished(done, train_cfg):
        _say(f"train: reusing the finished run in {run_dir}")
        return done  # type: ignore[return-value]
    size = (
        f"{train_cfg.ppo.total_timesteps} timesteps"
        if train_cfg.algo == "ppo"
        else f"{train_cfg.act_q.iterations} iterations"
    )
    _say(f"train: {train_cfg.algo}, {size} -> {run_dir}" + (" (resuming)" if done else ""))
    return run_training(train_cfg, run_dir, resume=done is not None)


def build_configs(config: QuickstartConfig, tasks_path: Path, store: Path) -> tuple[dict[str, Any], Any]:
    """(the env config for collection, mode cached; the TrainConfig, replay on the train split)."""
    from hrm_spawn.trainers.config import TrainConfig, _merge

    train_data = dict(config.train)
    train_data.setdefault("preset", "trainers/act_q")
    preset = train_data.pop("preset")
    env = {
        **train_data.pop("env", {}),
        "tasks": str(tasks_path),
        "store": str(store),
        "budget": config.collect.budget.model_dump(),
    }
    base = load_config(TrainConfig, preset).model_dump()
    env = _merge(base["env"], env)
    train_cfg = build_config(
        TrainConfig, _merge(_merge(base, train_data), {"env": {**env, "mode": "replay", "split": "train"}})
    )
    return {**env, "mode": "cached"}, train_cfg


def _crossfit(config: QuickstartConfig, train_cfg: Any, out: Path) -> dict[str, Any]:
    from hrm_spawn.trainers.crossfit import crossfit

    folds = config.eval.folds
    _say(
        f"train + evaluate: cross-fitting {folds} folds ({train_cfg.act_q.iterations} iterations each), "
        "every task held out once"
    )
    run_dir = run_dir_for(train_cfg, out)  # the config and feature layout name the folds' runs
    workers = config.eval.fold_workers or _cores()
    return crossfit(
        train_cfg, folds, run_dir, config.eval.lam, resamples=config.eval.resamples, workers=workers
    )


def run_quickstart(config: QuickstartConfig, out: Path) -> dict[str, Any]:
    from hrm_spawn.trainers.evaluate import evaluate
    from hrm_spawn.trainers.report import comparison_table, write_report

    timer = StageTimer()
    tasks_path = ensure_tasks(config.tasks, config.collect.workers)
    timer.done("tasks")
    store = Path(config.store).expanduser() if config.store else stores_dir() / f"{config.tasks.name}.sqlite"
    collect_env, train_cfg = build_configs(config, tasks_path, store)
    run_collect(tasks_path, store, collect_env, config.collect)
    timer.done("collect")
    if config.eval.folds == 1:
        raise ValueError("eval.folds must be 0 (one held-out split) or >= 2 (cross-fitting)")
    if config.eval.folds >= 2:
        report = _crossfit(config, train_cfg, out)
        timer.done("train+evaluate")
    else:
        ckpt = _train(train_cfg, out)
        timer.done("train")
        _say(
            "evaluate: held-out tasks, every baseline, the oracle"
            + (", λ sweep" if config.eval.sweep else "")
        )
        report = evaluate(ckpt, {}, "heldout", config.eval.lam, config.eval.sweep)
        timer.done("evaluate")
    report["meta"]["quickstart_seconds"] = timer.total
    report["meta"]["quickstart_stage_seconds"] = dict(timer.seconds)
    paths = write_report(report, out)
    if "intervals" in report:
        from hrm_spawn.trainers.crossfit import append_intervals, interval_table, summary_line

        append_intervals(report, paths["md"])
        print(comparison_table(report))
        print(interval_table(report["intervals"]))
        print(summary_line(report["intervals"]))
    else:
        print(comparison_table(report))
    for key, value in report["targets"].items():
        print(f"{key}: {value}")
    print(f"report: {paths['json']}\nmarkdown: {paths['md']}\nplot: {paths['png']}")
    _say(timer.summary())
    return report


def cli_quickstart(args: argparse.Namespace) -> int:
    name = "quickstart-tiny" if args.tiny and args.config == "quickstart" else args.config
    config = load_config(QuickstartConfig, name, args.overrides)
    out = Path(args.out) if args.out else data_dir() / "quickstart" / ("tiny" if args.tiny else "full")
    out.mkdir(parents=True, exist_ok=True)
    _say(f"config {name}; output in {out}; runs under {runs_dir()}")
    run_quickstart(config, out)
    return 0
