"""The ``hrm-spawn`` command line.

Each sub-command parses its arguments here and hands them to the module that does the work, imported
lazily so that ``--help`` and ``doctor`` start fast (no torch import). Every ``--help`` ends with
examples; a mistyped sub-command gets a suggestion; ``-v``/``-q`` set the log level.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable

from hrm_spawn.envs.suggest import did_you_mean


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean ...?" for an invalid choice (sub-commands, --split values, ...), and
    ``key=value`` overrides accepted after options too (``env check ID --steps 5 mode=replay``)."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
        parsed, extras = self.parse_known_args(args, namespace)
        overrides = [e for e in extras if "=" in e and not e.startswith("-")]
        if overrides and isinstance(getattr(parsed, "overrides", None), list):
            parsed.overrides += overrides
            extras = [e for e in extras if e not in overrides]
        if extras:
            # the sub-command that got them says so, with its usage and the option meant
            target = self._command_parser(list(sys.argv[1:] if args is None else args))
            hint = ""
            for extra in (e.split("=", 1)[0] for e in extras if e.startswith("--")):
                hint = hint or did_you_mean(extra, target._option_string_actions)
            target.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def _command_parser(self, argv: list[str]) -> argparse.ArgumentParser:
        """The innermost sub-command parser ``argv`` names (``env check`` -> its parser)."""
        parser: argparse.ArgumentParser = self
        for word in argv:
            subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            if subs is not None and word in subs.choices:
                parser = subs.choices[word]
        return parser

    def error(self, message: str) -> None:  # type: ignore[override]
        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:
            message += did_you_mean(bad[1], re.findall(r"'([^']*)'", bad[2]) or bad[2].split(", "))
        super().error(message)


def _examples(*lines: str) -> dict[str, object]:
    """``add_parser`` keywords: an examples epilog shown as written."""
    text = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    return {"epilog": text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _verbosity_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default, help="more log output (-vv: all)")
    parser.add_argument("-q", "--quiet", action="count", default=default, help="warnings and errors only")


_COMMON = Parser(add_help=False)
_verbosity_flags(_COMMON, argparse.SUPPRESS)  # after the sub-command too, without resetting the global ones


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """``"pkg.module:function"`` -> a handler importing the module only when the command runs."""

    def handler(args: argparse.Namespace) -> int:
        module_name, func_name = target.split(":")
        return int(getattr(importlib.import_module(module_name), func_name)(args) or 0)

    return handler


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    tasks = sub.add_parser(
        "tasks",
        help="check and build SWE-smith task files",
        parents=[_COMMON],
        **_examples("hrm-spawn tasks check tinydb.jsonl", "hrm-spawn tasks split tinydb.jsonl --folds 5"),
    )
    tsub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="{check,build,split}")

    check = tsub.add_parser(
        "check",
        help="validate a task file; one line per bad record, exit 0 only if all valid",
        parents=[_COMMON],
        **_examples("hrm-spawn tasks check tinydb.jsonl", "hrm-spawn tasks check tasks.parquet --fail-fast"),
    )
    check.add_argument("file", help="JSON, JSONL, parquet file or a datasets save_to_disk directory")
    check.add_argument("--fail-fast", action="store_true", help="stop at the first bad record")
    check.add_argument(
        "--apply", action="store_true", help="also dry-run every patch against its built repository"
    )
    check.set_defaults(func=_lazy("hrm_spawn.envs.tasks:cli_check"))

    build = tsub.add_parser(
        "build",
        help="build validated bug tasks from a real repository",
        parents=[_COMMON],
        **_examples(
            "hrm-spawn tasks build --repo pypi:tinydb==4.9.0 --out tinydb.jsonl",
            "hrm-spawn tasks build --repo ./myproject --out mine.jsonl --max-bugs 40 --workers 2",
        ),
    )
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

    split = tsub.add_parser(
        "split",
        help="print the train/held-out split of a task file (its tasks and groups)",
        parents=[_COMMON],
        **_examples(
            "hrm-spawn tasks split tinydb.jsonl", "hrm-spawn tasks split tinydb.jsonl --folds 5 --seed 1"
        ),
    )
    split.add_argument("file")
    split.add_argument("--folds", type=int, default=0, help="K >= 2: the cross-fitting folds instead")
    split.add_argument("--seed", type=int, default=0, help="the split seed (env.split_seed)")
    split.set_defaults(func=_lazy("hrm_spawn.envs.split:cli_split"))


def _add_collect(sub: argparse._SubParsersAction) -> None:
    collect = sub.add_parser(
        "collect",
        help="run agents on tasks and fill the outcome store (resumable)",
        parents=[_COMMON],
        **_examples(
            "hrm-spawn collect --tasks tinydb.jsonl --store outcomes.sqlite --workers 2",
            "hrm-spawn collect --tasks tinydb.jsonl --store outcomes.sqlite --agents op-flip,broad --split train",
        ),
    )
    collect.add_argument("--tasks", required=True, help="task file")
    collect.add_argument(
        "--agents", default=None, help="comma-separated agent names (default: the config's agents)"
    )
    collect.add_argument("--store", required=True, help="SQLite outcome store path")
    collect.add_argument("--workers", type=int, default=None, help="worker processes (default: cores)")
    collect.add_argument("--config", default="env/default", help="env config (sandbox, agents, seeds, depth)")
    collect.add_argument("--split", default=None, choices=["train", "heldout"], help="only this split")
    collect.add_argument(
        "--backend", default="local", choices=["local", "ray"], help="worker processes here, or Ray actors"
    )
    collect.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    collect.add_argument(
        "--retry-errors", action="store_true", help="also run again the stored runs whose agent crashed"
    )
    collect.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    collect.set_defaults(func=_lazy("hrm_spawn.envs.collect:cli_collect"))


def _add_store(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser(
        "store",
        help="outcome stores: import tables from other harnesses, list agents",
        parents=[_COMMON],
        **_examples("hrm-spawn store agents outcomes.sqlite"),
    )
    ssub = store.add_subparsers(dest="store_command", required=True, metavar="{import,agents}")
    imp = ssub.add_parser(
        "import",
        help="per-task, per-agent results from another harness -> replay outcomes",
        parents=[_COMMON],
        **_examples(
            "hrm-spawn store import runs.jsonl --format jsonl --store imported.sqlite",
            "hrm-spawn store import board.json --format leaderboard --store imported.sqlite --tasks tasks.jsonl",
        ),
    )
    imp.add_argument("file", help="the table: JSONL, CSV, or a leaderboard's nested JSON")
    imp.add_argument("--format", required=True, choices=["jsonl", "csv", "leaderboard", "mini-swe-agent"])
    imp.add_argument(
        "--report", default=None, help="mini-swe-agent: swebench's evaluation report (resolved_ids)"
    )
    imp.add_argument(
        "--store", required=True, help="SQLite outcome store to write (its cost unit is recorded)"
    )
    imp.add_argument(
        "--agent-map", default=None, help="raw=name[@version],... or a YAML/JSON file; only these"
    )
    imp.add_argument(
        "--tasks", default=None, help="task file with the rows (and problem text) of known tasks"
    )
    imp.add_argument("--tasks-out", default=None, help="task file for replay (default: STORE.tasks.jsonl)")
    imp.add_argument(
        "--columns", default=None, help="field=column,... for columns no alias matches (csv, jsonl)"
    )
    imp.add_argument(
        "--price-per-step",
        default=None,
        help="raw=USD,... or a YAML/JSON file: cost = steps x price, for tables without a cost",
    )
    imp.add_argument(
        "--task-text",
        default="none",
        choices=["none", "repo"],
        help="repo: an id-only task's problem text names its repository (what the policy sees)",
    )
    imp.set_defaults(func=_lazy("hrm_spawn.envs.store_import:cli_import"))
    agents = ssub.add_parser(
        "agents",
        help="the agent identities in a store with their run counts",
        parents=[_COMMON],
        **_examples("hrm-spawn store agents outcomes.sqlite"),
    )
    agents.add_argument("store")
    agents.set_defaults(func=_lazy("hrm_spawn.envs.store_import:cli_agents"))


def _add_agents(sub: argparse._SubParsersAction) -> None:
    agents = sub.add_parser(
        "agents",
        help="list agents with the identity (version) the store keys on",
        parents=[_COMMON],
        **_examples("hrm-spawn agents", "hrm-spawn agents --file agents/llm-two-models"),
    )
    agents.add_argument(
        "--file", help="an agents YAML file or preset (agents/llm-two-models); default: all known"
    )
    agents.add_argument("overrides", nargs="*", help="agents.NAME.key=value overrides of --file's agents")
    agents.set_defaults(func=_lazy("hrm_spawn.envs.agents.registry:cli_agents"))


def _add_env(sub: argparse._SubParsersAction) -> None:
    example = "hrm-spawn env check HRMSpawn/SWESmith-v0 tasks=tinydb.jsonl store=outcomes.sqlite mode=replay"
    env = sub.add_parser("env", help="check environments", parents=[_COMMON], **_examples(example))
    esub = env.add_subparsers(dest="env_command", required=True, metavar="{check}")
    check = esub.add_parser(
        "check",
        help="run gymnasium's and SB3's checkers and a masked random rollout",
        parents=[_COMMON],
        **_examples(example + " --steps 50", "hrm-spawn env check mypkg.envs:MyEnv --config my_env.yaml"),
    )
    check.add_argument("target", help="a registered env id (HRMSpawn/SWESmith-v0) or module:Class")
    check.add_argument("--config", default=None, help="env config YAML passed to the constructor")
    check.add_argument("--steps", type=int, default=200, help="steps of the masked random rollout")
    check.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    check.set_defaults(func=_lazy("hrm_spawn.envs.check:cli_check"))


def _add_policy(sub: argparse._SubParsersAction) -> None:
    examples = _examples(
        "hrm-spawn policy summary policy/hrm-27m",
        "hrm-spawn policy summary policy/hrm-tiny hidden_size=128 --agents 3",
    )
    policy = sub.add_parser("policy", help="inspect HRM policy configs", parents=[_COMMON], **examples)
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="{summary}")
    summary = psub.add_parser(
        "summary",
        help="print parameter counts and the attention backend as JSON",
        parents=[_COMMON],
        **examples,
    )
    summary.add_argument("config", help="policy config, e.g. policy/hrm-27m or a YAML path")
    summary.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    summary.add_argument("--agents", type=int, default=None, help="K agents: 1 + 2K actions (default 4)")
    summary.add_argument(
        "--features", type=int, default=None, help="env feature count (default: the env's count for K agents)"
    )
    summary.set_defaults(func=_lazy("hrm_spawn.policies.summary:cli_summary"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a spawn policy (ACT Q-learning or MaskablePPO)",
        parents=[_COMMON],
        **_examples(*TRAIN_EXAMPLES),
    )
    train.add_argument(
        "config", nargs="?", default=None, help="trainer config: trainers/act_q, trainers/ppo or a YAML path"
    )
    train.add_argument(
        "overrides", nargs="*", help="config overrides key.sub=value (env.tasks=FILE is needed)"
    )
    train.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    train.add_argument("--force", action="store_true", help="train into an --out that already holds a run")
    train.add_argument("--out", default=None, help="run directory (default under the data dir)")
    train.set_defaults(func=_train)


TRAIN_EXAMPLES = (
    "hrm-spawn train trainers/act_q env.tasks=tinydb.jsonl env.store=outcomes.sqlite --out runs/a",
    "hrm-spawn train trainers/ppo env.tasks=tinydb.jsonl env.store=outcomes.sqlite ppo.total_timesteps=20000",
    "hrm-spawn train trainers/act_q --resume --out runs/a      # continue a killed run",
)


def _train(args: argparse.Namespace) -> int:
    """Validate the whole config (env section included) before the trainer writes anything."""
    if args.config is None and not args.resume:
        presets = "trainers/act_q (ACT Q-learning), trainers/ppo (MaskablePPO)"
        raise _UsageError(
            f"which trainer config? give one of {presets} or a YAML path, plus env.tasks=FILE; e.g.\n  "
            + "\n  ".join(TRAIN_EXAMPLES[:2])
        )
    if not args.resume:
        from hrm_spawn.trainers.preflight import check_train

        check_train(args.config, list(args.overrides))
    return _lazy("hrm_spawn.trainers.train:cli_train")(args)


class _UsageError(ValueError):
    """Wrong use of a command (printed with the command's name, exit status 2)."""


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a checkpoint against baselines and the oracle",
        parents=[_COMMON],
        **_examples(
            "hrm-spawn eval runs/a --tasks tinydb.jsonl --store outcomes.sqlite --lambda-sweep --out report/",
            "hrm-spawn eval runs/a --tasks tinydb.jsonl --lambda 0.02 --split train --out report-train/",
        ),
    )
    ev.add_argument("checkpoint", help="checkpoint directory")
    ev.add_argument("--tasks", default=None, help="task file (default: the checkpoint's)")
    ev.add_argument("--store", default=None, help="outcome store (default: the checkpoint's)")
    ev.add_argument("--split", default="heldout", choices=["train", "heldout", "all"])
    lam = ev.add_mutually_exclusive_group()
    lam.add_argument("--lambda", dest="lam", type=float, default=None, help="evaluate at this cost weight")
    lam.add_argument("--lambda-sweep", action="store_true", help="sweep λ and report the area under the hull")
    ev.add_argument(
        "--mode",
        default="replay",
        choices=["replay", "cached", "live"],
        help="replay: outcomes from the store only; cached: run the policy's missing runs first; "
        "live: run every run the policy steps afresh first",
    )
    ev.add_argument(
        "--backend",
        default=None,
        choices=["local", "ray"],
        help="cached/live: where the agents run, as collect's (default local)",
    )
    ev.add_argument("--workers", type=int, default=None, help="cached/live: parallel jobs (default 1)")
    ev.add_argument("--address", default=None, help="cached/live with --backend ray: a running cluster")
    ev.add_argument("--out", required=True, help="directory for report.json, report.md, pareto.png")
    ev.add_argument(
        "overrides", nargs="*", help="env overrides key=value, e.g. folds=5 fold=2 (env. optional)"
    )
    ev.set_defaults(func=_lazy("hrm_spawn.trainers.evaluate:cli_eval"))


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    qs = sub.add_parser(
        "quickstart",
        help="the main job: build tasks, collect, train, evaluate",
        parents=[_COMMON],
        **_examples("hrm-spawn quickstart --tiny", "hrm-spawn quickstart --out report/"),
    )
    qs.add_argument("--tiny", action="store_true", help="a first look in a few minutes")
    qs.add_argument("--out", default=None, help="report directory (default under the data dir)")
    qs.add_argument("--config", default="quickstart", help="quickstart config")
    qs.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    qs.set_defaults(func=_lazy("hrm_spawn.trainers.quickstart:cli_quickstart"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hrm-spawn")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def _add_images(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser(
        "images",
        help="build the docker sandbox's images (Debian + PyPI, no registry)",
        **_examples("hrm-spawn images build", "hrm-spawn images build --repo tinydb"),
    )
    isub = images.add_subparsers(dest="images_command", required=True, metavar="{build}")
    build = isub.add_parser(
        "build",
        help="build what is missing: the base image, or one per --repo",
        **_examples("hrm-spawn images build", "hrm-spawn images build --repo tinydb --check"),
    )
    build.add_argument(
        "--repo", action="append", help="a built repository (name or unique prefix, e.g. tinydb); repeatable"
    )
    build.add_argument("--check", action="store_true", help="build nothing; exit 1 if an image is missing")
    build.add_argument("--force", action="store_true", help="rebuild the named images even when present")
    build.add_argument("-q", "--quiet", action="store_true", help="print only the tag of each named image")
    build.set_defaults(func=_lazy("hrm_spawn.envs.images:cli_images_build"))


def _add_crossfit(sub: argparse._SubParsersAction) -> None:
    cf = sub.add_parser(
        "crossfit",
        help="cross-fit K folds, pool the held-out reports, bootstrap intervals",
        parents=[_COMMON],
        **_examples(
            "hrm-spawn crossfit trainers/act_q env.tasks=tinydb.jsonl env.store=outcomes.sqlite --out cf/",
            "hrm-spawn crossfit runs/a/config.yaml act_q.iterations=60 --folds 3 --out cf3/",
        ),
    )
    cf.add_argument("config", help="train config (preset or YAML path), e.g. a quickstart run's config.yaml")
    cf.add_argument("overrides", nargs="*", help="config overrides key.sub=value, e.g. act_q.iterations=60")
    cf.add_argument("--folds", type=int, default=5, help="K: policies trained, each task held out once")
    cf.add_argument("--out", required=True, help="directory for report.*, crossfit.json and the fold runs")
    cf.add_argument("--lam", type=float, default=None, help="λ of the report (default: the range's middle)")
    cf.add_argument("--seed", type=int, default=None, help="split seed of the folds (default: the config's)")
    cf.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    cf.add_argument("--workers", type=int, default=1, help="folds trained at once, one process each")
    cf.set_defaults(func=_lazy("hrm_spawn.trainers.crossfit:cli_crossfit"))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hrm-spawn",
        description="Train and evaluate HRM policies that decide when to halt, spawn or delegate agents.",
        **_examples(
            "hrm-spawn quickstart --tiny                  # the whole pipeline, small",
            "hrm-spawn doctor                             # what this machine offers",
            "hrm-spawn train --help                       # every command has examples",
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _verbosity_flags(parser, 0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tasks(sub)
    _add_collect(sub)
    _add_store(sub)
    _add_agents(sub)
    _add_env(sub)
    _add_policy(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_quickstart(sub)
    _add_crossfit(sub)
    _add_images(sub)
    doctor = sub.add_parser(
        "doctor",
        help="print what this machine offers (torch, CUDA, Docker, ...)",
        parents=[_COMMON],
        **_examples("hrm-spawn doctor"),
    )
    doctor.set_defaults(func=_lazy("hrm_spawn.trainers.doctor:cli_doctor"))
    return parser


def _stdout_reader_gone() -> bool:
    """stdout is a pipe whose reading end is closed (poll reports an error on the writing end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno (captured), no poll on this platform
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hrm_spawn.envs.logs import flush_warnings, setup_logging, teardown_logging

    setup_logging(int(args.verbose or 0) - int(args.quiet or 0))
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that went away is handled below, not at exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a clear one-line error for users; tracebacks with HRM_SPAWN_DEBUG=1
        import os

        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            # `hrm-spawn agents | head -1`: the reader has all it wants (a broken socket is an error)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 141  # 128 + SIGPIPE, as shells report it
        if os.environ.get("HRM_SPAWN_DEBUG"):
            raise
        print(f"hrm-spawn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        flush_warnings()
        teardown_logging()


if __name__ == "__main__":
    sys.exit(main())
