"""The ``hrm-spawn`` command line.

Each sub-command parses its arguments here and hands them to the module that does the work, imported
lazily so that ``--help`` and ``doctor`` start fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """``"pkg.module:function"`` -> a handler importing the module only when the command runs."""

    def handler(args: argparse.Namespace) -> int:
        module_name, func_name = target.split(":")
        return int(getattr(importlib.import_module(module_name), func_name)(args) or 0)

    return handler


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    tasks = sub.add_parser("tasks", help="check and build SWE-smith task files")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="{check,build,split}")

    check = tsub.add_parser(
        "check", help="validate a task file; one line per bad record, exit 0 only if all valid"
    )
    check.add_argument("file", help="JSON, JSONL, parquet file or a datasets save_to_disk directory")
    check.add_argument("--fail-fast", action="store_true", help="stop at the first bad record")
    check.set_defaults(func=_lazy("hrm_spawn.envs.tasks:cli_check"))

    build = tsub.add_parser("build", help="build validated bug tasks from a real repository")
    build.add_argument("--repo", required=True, help="pypi:NAME==VERSION, a local directory, or a git URL")
    build.add_argument("--out", required=True, help="output JSONL file")
    build.add_argument("--max-bugs", type=int, default=None, help="stop after this many validated tasks")
    build.add_argument("--combined", type=int, default=None, help="how many combined (2-3 edit) bugs to add")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--workers", type=int, default=None, help="parallel validation processes (default: cores)"
    )
    build.add_argument(
        "--kinds",
        nargs="+",
        default=None,
        help="only these modifier kinds (e.g. remove_assign class_rm_base)",
    )
    build.set_defaults(func=_lazy("hrm_spawn.envs.build:cli_build"))

    split = tsub.add_parser("split", help="print the train/held-out split of a task file")
    split.add_argument("file")
    split.add_argument("--folds", type=int, default=0, help="K >= 2: the cross-fitting folds instead")
    split.add_argument("--seed", type=int, default=0, help="the split seed (env.split_seed)")
    split.set_defaults(func=_lazy("hrm_spawn.envs.split:cli_split"))


def _add_collect(sub: argparse._SubParsersAction) -> None:
    collect = sub.add_parser("collect", help="run agents on tasks and fill the outcome store (resumable)")
    collect.add_argument("--tasks", required=True, help="task file")
    collect.add_argument(
        "--agents", default=None, help="comma-separated agent names (default: the config's agents)"
    )
    collect.add_argument("--store", required=True, help="SQLite outcome store path")
    collect.add_argument("--workers", type=int, default=None, help="worker processes (default: cores)")
    collect.add_argument("--config", default="env/default", help="env config (sandbox, agents, seeds, depth)")
    collect.add_argument("--split", default=None, choices=["train", "heldout"], help="only this split")
    collect.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    collect.set_defaults(func=_lazy("hrm_spawn.envs.collect:cli_collect"))


def _add_env(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser("env", help="check environments")
    esub = env.add_subparsers(dest="env_command", required=True, metavar="{check}")
    check = esub.add_parser("check", help="run gymnasium's and SB3's checkers and a masked random rollout")
    check.add_argument("target", help="a registered env id (HRMSpawn/SWESmith-v0) or module:Class")
    check.add_argument("--config", default=None, help="env config YAML passed to the constructor")
    check.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    check.set_defaults(func=_lazy("hrm_spawn.envs.check:cli_check"))


def _add_policy(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser("policy", help="inspect HRM policy configs")
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="{summary}")
    summary = psub.add_parser("summary", help="print parameter counts and the attention backend as JSON")
    summary.add_argument("config", help="policy config, e.g. policy/hrm-27m or a YAML path")
    summary.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    summary.set_defaults(func=_lazy("hrm_spawn.policies.summary:cli_summary"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a spawn policy (ACT Q-learning or MaskablePPO)")
    train.add_argument("config", help="trainer config, e.g. trainers/act_q or a YAML path")
    train.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    train.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    train.add_argument("--out", default=None, help="run directory (default under the data dir)")
    train.set_defaults(func=_lazy("hrm_spawn.trainers.train:cli_train"))


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a checkpoint against baselines and the oracle")
    ev.add_argument("checkpoint", help="checkpoint directory")
    ev.add_argument("--tasks", required=True, help="task file")
    ev.add_argument("--store", default=None, help="outcome store (default: the checkpoint's)")
    ev.add_argument("--split", default="heldout", choices=["train", "heldout", "all"])
    lam = ev.add_mutually_exclusive_group()
    lam.add_argument("--lambda", dest="lam", type=float, default=None, help="evaluate at this cost weight")
    lam.add_argument("--lambda-sweep", action="store_true", help="sweep λ and report the area under the hull")
    ev.add_argument("--mode", default="replay", choices=["replay", "cached", "live"])
    ev.add_argument("--out", required=True, help="directory for report.json, report.md, pareto.png")
    ev.set_defaults(func=_lazy("hrm_spawn.trainers.evaluate:cli_eval"))


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    qs = sub.add_parser("quickstart", help="the main job: build tasks, collect, train, evaluate")
    qs.add_argument("--tiny", action="store_true", help="a first look in a few minutes")
    qs.add_argument("--out", default=None, help="report directory (default under the data dir)")
    qs.add_argument("--config", default="quickstart", help="quickstart config")
    qs.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    qs.set_defaults(func=_lazy("hrm_spawn.trainers.quickstart:cli_quickstart"))


def _add_crossfit(sub: argparse._SubParsersAction) -> None:
    cf = sub.add_parser("crossfit", help="cross-fit K folds, pool the held-out reports, bootstrap intervals")
    cf.add_argument("config", help="train config (preset or YAML path), e.g. a quickstart run's config.yaml")
    cf.add_argument("overrides", nargs="*", help="config overrides key.sub=value, e.g. act_q.iterations=60")
    cf.add_argument("--folds", type=int, default=5, help="K: policies trained, each task held out once")
    cf.add_argument("--out", required=True, help="directory for report.*, crossfit.json and the fold runs")
    cf.add_argument("--lam", type=float, default=None, help="λ of the report (default: the range's middle)")
    cf.add_argument("--seed", type=int, default=None, help="split seed of the folds (default: the config's)")
    cf.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    cf.set_defaults(func=_lazy("hrm_spawn.trainers.crossfit:cli_crossfit"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrm-spawn",
        description="Train and evaluate HRM policies that decide when to halt, spawn or delegate agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tasks(sub)
    _add_collect(sub)
    _add_env(sub)
    _add_policy(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_quickstart(sub)
    _add_crossfit(sub)
    doctor = sub.add_parser("doctor", help="print what this machine offers (torch, CUDA, Docker, ...)")
    doctor.set_defaults(func=_lazy("hrm_spawn.trainers.doctor:cli_doctor"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a clear one-line error for users; tracebacks with HRM_SPAWN_DEBUG=1
        import os

        if os.environ.get("HRM_SPAWN_DEBUG"):
            raise
        print(f"hrm-spawn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
