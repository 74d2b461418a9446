"""hrm-spawn eval CHECKPOINT [--tasks FILE] [--store DB] [--split heldout] [--lambda X | --lambda-sweep] --out DIR [key=value ...]

Runs the checkpoint's policy greedily (ACT Q: on its Q-head; PPO: the mode of its masked action
distribution) and every baseline on the chosen split, one episode per task, with the replay dynamics of
the outcome store (``BatchedReplayEnv``: the same masks, costs and rewards as SpawnEnv in replay mode).
The env is the one the checkpoint's config names: the built-in one's tasks and tables are read from its
config (``load_replay``), a custom env is built and asked for its ``replay()`` (so tasks and outcomes it
keeps in memory, and the settings it supplies itself, are what is evaluated). ``key=value`` arguments
override env settings as ``train`` takes them (``folds=5 fold=2``; the ``env.`` prefix is optional).

The path from checkpoint to report: trainers/checkpoint.py (config, weights) -> this module (the sets,
the actors) -> trainers/rollout.py (episodes) -> envs/replay.py (the batched env, envs/episode.py's
rules) -> trainers/baselines.py, envs/oracle.py -> trainers/report.py.
Both kinds read λ as feature 0 of the observation, so the sweep feeds each λ the same way. ``best_cascade`` is chosen on the *train* split at each λ.
Writes DIR/report.json, DIR/report.md and DIR/pareto.png (trainers/report.py).

Modes: ``replay`` (default) looks outcomes up only. ``cached``/``live`` first fill the store with the
runs the policy steps at the report's λ, on the collect backend (``--backend local|ray``, ``--workers``,
``--address``; trainers/live.py: rounds of replay up to the first missing run, the missing runs of all
episodes run as one frontier of jobs), then evaluate everything from the store as in replay. ``cached``
runs only what the store lacks; ``live`` runs every run the policy steps afresh (replacing the stored
row). A failed job (infrastructure) is never stored as an outcome: the report's ``meta.live`` counts it
by kind, and ``cli_eval`` exits 1 as collect does. A custom env (not SpawnEnv) runs its own
``cached``/``live`` mode in this process instead, one task at a time, without a backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_spawn.envs import episode as E
from hrm_spawn.envs.config import ConfigError, build_config
from hrm_spawn.envs.env_config import EnvConfig
from hrm_spawn.envs.progress import progress
from hrm_spawn.envs.registry import SPAWN_ENV_ID
from hrm_spawn.envs.replay import (
    OBSERVE,
    BatchedReplayEnv,
    Replay,
    cost_unit_label,
    load_replay,
    per_cost_unit,
)
from hrm_spawn.trainers.baselines import (
    CASCADE_MAX_AGENTS,
    CASCADE_MAX_LEN,
    RandomActor,
    SequenceActor,
    cascade_candidates,
    cascade_name,
    halt_actor,
    single_sequence,
    spawn_all_sequence,
)
from hrm_spawn.trainers.checkpoint import load_into, load_train_config, resolve_checkpoint
from hrm_spawn.trainers.config import TrainConfig
from hrm_spawn.trainers.report import EpisodeRecord, build_report, comparison_table, summarize, write_report
from hrm_spawn.trainers.rollout import (
    Actor,
    Episode,
    PolicyActor,
    make_env,
    replay_of,
    run_batched_episodes,
    run_gym_episodes,
)

RANDOM_REPEATS = 5  # random's episodes per task (its mean is noisy otherwise)


@dataclass
class ReplaySet(Replay):
    """A :class:`Replay` (tasks, outcome tables, episode rules) with what evaluating actors on it adds."""

    observation_space: Any = None  # the env's, which sizes a PPO policy
    oracle: list[list[int]] | None = None  # cached oracle action sequences

    def run(
        self,
        make_actor: Callable[[int], Actor],
        lam: float,
        task_rows: np.ndarray | None = None,
        with_tokens: bool = True,
    ) -> list[Episode]:
        rows = np.arange(len(self.tasks)) if task_rows is None else np.asarray(task_rows)
        env = BatchedReplayEnv(
            self.tasks, self.tables, self.spec, num_envs=len(rows), seed=0, with_tokens=with_tokens
        )
        return run_batched_episodes(env, make_actor(len(rows)), rows, np.full(len(rows), lam))

    def records(self, episodes: Sequence[Episode]) -> list[EpisodeRecord]:
        kinds = {t.instance_id: list(getattr(t, "modifier_kinds", None) or []) for t in self.tasks}
        return [
            EpisodeRecord(
                e.instance_id,
                e.pass_rate,
                e.resolved,
                e.total_cost,
                e.steps,
                e.actions.tolist(),
                kinds.get(e.instance_id, []),
            )
            for e in episodes
        ]

    @classmethod
    def of(cls, replay: Replay) -> ReplaySet:
        return cls(
            replay.tasks,
            replay.tables,
            replay.rules,
            E.observation_space(replay.rules.layout, replay.rules.seq_len),
        )


def replay_sets(env_cfg: EnvConfig, split: str) -> tuple[ReplaySet, ReplaySet]:
    """(the train split, the evaluated split) of a built-in env config, read from its store (no env built)."""
    return tuple(  # type: ignore[return-value]
        ReplaySet.of(load_replay(env_cfg.model_copy(update={"split": name, "mode": "replay"})))
        for name in ("train", split)
    )


def env_replay_sets(config: TrainConfig, split: str) -> tuple[ReplaySet, ReplaySet]:
    """(train, evaluated) sets of the env ``config`` names: the built-in one from its config, any other
    built with the split and asked for its ``replay()``."""
    if config.env_id == SPAWN_ENV_ID and not config.env_args:
        return replay_sets(config.env, split)
    out = []
    for name in ("train", split):
        env = make_env(config, split=name, mode="replay")
        try:
            replay = replay_of(env)
        finally:
            env.close()
        if replay is None:
            raise ConfigError(
                f"eval: env {config.env_id!r} cannot replay its outcomes (it has no replay() method, as "
                "SpawnEnv has); baselines and the oracle need its outcome tables"
            )
        out.append(ReplaySet.of(replay))
    return out[0], out[1]


def load_policy_from_checkpoint(
    ckpt: Path, num_actions: int, num_features: int, device: torch.device, config: TrainConfig | None = None
):
    from hrm_spawn.policies.spawn_policy import SpawnPolicy

    config = config or load_train_config(ckpt)
    policy = SpawnPolicy(config.policy, num_actions, num_features)
    load_into(policy, ckpt, f"a policy for {num_actions} actions and {num_features} features")
    return policy.to(device).eval()


ActorFactory = Callable[[int], Actor]


def load_actor(
    ckpt: Path,
    observation_space: Any,
    num_actions: int,
    device: torch.device,
    config: TrainConfig | None = None,
) -> ActorFactory:
    """``make_actor(n)`` running the checkpoint's policy greedily, whichever trainer wrote it."""
    config = config or load_train_config(ckpt)
    algo = config.algo
    if algo == "ppo":
        from hrm_spawn.trainers.ppo import PPOActor, load_ppo_policy

        ppo = load_ppo_policy(ckpt, observation_space, num_actions, device, config)
        return lambda _: PPOActor(ppo, device)
    if algo != "act_q":
        raise ConfigError(f"{ckpt}: eval knows ACT Q and PPO checkpoints; this one is {algo!r}")
    num_features = int(observation_space["features"].shape[0])
    policy = load_policy_from_checkpoint(ckpt, num_actions, num_features, device, config)
    return lambda _: PolicyActor(policy, device)


# ---------------------------------------------------------------------------------------------------


class CascadeTable:
    """Every candidate cascade's mean pass-rate and cost on a replay set (λ-free; scores follow)."""

    def __init__(self, rs: ReplaySet, max_len: int = CASCADE_MAX_LEN, max_agents: int = CASCADE_MAX_AGENTS):
        k, steps = len(rs.spec.agents), rs.spec.max_steps
        self.seqs = cascade_candidates(k, min(max_len, steps), min(max_agents, steps))
        n_tasks = len(rs.tasks)
        rows = np.tile(np.arange(n_tasks), len(self.seqs))
        per_row = [s for s in self.seqs for _ in range(n_tasks)]
        episodes = rs.run(lambda n: SequenceActor(per_row, stop_visible=1.0), 0.0, rows, with_tokens=False)
        pass_rate = np.asarray([e.pass_rate for e in episodes]).reshape(len(self.seqs), n_tasks)
        cost = np.asarray([e.total_cost for e in episodes]).reshape(len(self.seqs), n_tasks)
        self.pass_rate, self.cost = pass_rate.mean(1), cost.mean(1)

    def best(self, lam: float) -> tuple[int, ...]:
        return self.seqs[int(np.argmax(self.pass_rate - lam * self.cost))]


def baseline_records(
    train: ReplaySet, test: ReplaySet, lam: float, cascades: CascadeTable, seed: int = 0
) -> dict[str, list[EpisodeRecord]]:
    agents = test.spec.agents
    n = len(test.tasks)
    out: dict[str, list[EpisodeRecord]] = {}
    out["halt"] = test.records(test.run(lambda _: halt_actor, lam, with_tokens=False))
    for k, agent in enumerate(agents):
        seq = single_sequence(k)
        out[f"single:{agent}"] = test.records(
            test.run(lambda m, s=seq: SequenceActor([s] * m), lam, with_tokens=False)
        )
    every = spawn_all_sequence(len(agents))
    out["spawn_all"] = test.records(test.run(lambda m: SequenceActor([every] * m), lam, with_tokens=False))
    best = cascades.best(lam)
    out["best_cascade"] = test.records(
        test.run(lambda m: SequenceActor([best] * m, stop_visible=1.0), lam, with_tokens=False)
    )
    rows = np.tile(np.arange(n), RANDOM_REPEATS)
    out["random"] = test.records(test.run(lambda _: RandomActor(seed), lam, rows, with_tokens=False))
    out["oracle"] = test.records(
        test.run(lambda m: SequenceActor(_oracle_sequences(test)), lam, with_tokens=False)
    )
    return out


def _oracle_sequences(rs: ReplaySet) -> list[list[int]]:
    """Per task, the oracle's actions without the final halt (λ-free: computed once per set)."""
    from hrm_spawn.envs.oracle import oracle

    if rs.oracle is None:
        rs.oracle = [[a for a in oracle(table, rs.spec).actions if a != 0] for table in rs.tables]
    return rs.oracle


def policy_records(make_actor: ActorFactory, test: ReplaySet, lam: float) -> list[EpisodeRecord]:
    return test.records(test.run(make_actor, lam))


# ---------------------------------------------------------------------------------------------------


def sweep_lambdas(lam_low: float, lam_high: float, points: int = 7) -> list[float]:
    """0 plus an even grid over the training range (one checkpoint serves every λ in it)."""
    grid = np.linspace(lam_low, lam_high, points).tolist() if lam_high > lam_low else [lam_low]
    return sorted({0.0, *(round(x, 6) for x in grid)})


def with_env_overrides(config: TrainConfig, env_overrides: dict[str, Any] | list[str]) -> TrainConfig:
    """The config with env settings replaced: a dict of values, or ``key=value`` strings (``env.`` optional)."""
    if isinstance(env_overrides, dict):
        given = {k: v for k, v in env_overrides.items() if v is not None}
        items = [f"env.{k}={json.dumps(v)}" for k, v in given.items()]
    else:
        items = [o if o.startswith(("env.", "env_args.")) else f"env.{o}" for o in env_overrides]
    if not items:
        return config
    return build_config(TrainConfig, config.model_dump(), items, source="eval env overrides")


def evaluate(
    ckpt: Path,
    env_overrides: dict[str, Any] | list[str],
    split: str,
    lam: float | None,
    sweep: bool,
    mode: str = "replay",
    device: str = "cpu",
    show_progress: bool = True,
    backend: str | None = None,
    workers: int = 1,
    address: str | None = None,
) -> dict[str, Any]:
    """The report (dict) for a checkpoint; see trainers/report.py for the schema. ``show_progress``: the
    live run's and the λ sweep's progress on stderr. ``backend``/``workers``/``address``: where a
    ``cached``/``live`` eval runs its agents (collect's executors; default ``local``, one worker)."""
    config = with_env_overrides(load_train_config(ckpt), env_overrides)
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    dev = torch.device(device)
    lam_range = config.lam
    if lam is None:
        lam = (lam_range.low + lam_range.high) / 2
    live = None
    if mode != "replay":  # the store gets the outcomes the policy asks for
        live = _run_live(ckpt, config, split, mode, dev, lam, show_progress, backend, workers, address)
    elif backend is not None or address is not None:
        raise ConfigError("eval: --backend and --address are for --mode live or cached")
    try:
        train, test = env_replay_sets(config, split)
    except ValueError as exc:
        if live and live["failed"]:  # nothing but failures: say so rather than "run collect"
            raise ConfigError(
                f"eval --mode {mode}: no outcome to evaluate; {live['failed']} job(s) failed "
                f"({live['failed_by_kind']}), kept in the store's failed_jobs: {exc}"
            ) from exc
        raise
    make_actor = load_actor(ckpt, test.observation_space, test.spec.layout.n, dev, config)
    start = time.perf_counter()
    cascades = CascadeTable(train)
    records = {
        "hrm": policy_records(make_actor, test, lam),
        **baseline_records(train, test, lam, cascades, config.seed),
    }
    policies = {name: summarize(recs, lam) for name, recs in records.items()}
    policies["best_cascade"]["sequence"] = cascade_name(cascades.best(lam), test.spec.agents)
    sweep_points = None
    if sweep:
        sweep_points = sweep_records(
            lambda at: policy_records(make_actor, test, at),
            train,
            test,
            cascades,
            sweep_lambdas(lam_range.low, lam_range.high),
            config.seed,
            show_progress,
        )
    meta = {
        "checkpoint": str(ckpt),
        "algo": config.algo,
        "env_id": config.env_id,
        "tasks": config.env.tasks,
        "store": str(config.env.store_path()),
        "split": split,
        "num_tasks": len(test.tasks),
        "num_train_tasks": len(train.tasks),
        "mode": mode,
        "agents": test.spec.agents,
        "train_lambda_range": [lam_range.low, lam_range.high],
        **cost_meta(test.cost_unit, test.spec.max_cost),
        "observe": test.observe,
        "observe_means": OBSERVE[test.observe],
        "eval_seconds": round(time.perf_counter() - start, 3),
    }
    if live is not None:
        meta["live"] = live
    return build_report(policies, lam, meta, sweep_points)


def cost_meta(unit: str, max_cost: float) -> dict[str, Any]:
    """What a report's costs count: the store's unit, its label, and the episode's cost limit in it
    (λ is per unit: a score is pass_rate - λ · cost)."""
    label = cost_unit_label(unit)
    return {
        "cost_unit": unit,
        "cost_unit_label": label,
        "max_cost": max_cost,
        "lambda_unit": per_cost_unit(unit),
    }


def sweep_records(
    hrm: Callable[[float], list[EpisodeRecord]],
    train: ReplaySet,
    test: ReplaySet,
    cascades: CascadeTable,
    lams: list[float],
    seed: int = 0,
    show: bool = False,
) -> dict[str, list[dict[str, float]]]:
    """The λ-sweep points of the report: ``hrm(λ)``'s records and every baseline's, summarised per λ
    (``show``: one progress step per λ on stderr)."""
    points: dict[str, list[dict[str, float]]] = {}
    with progress("eval (λ sweep)", len(lams), enabled=show, unit="λ") as bar:
        for lam in lams:
            _sweep_point(points, hrm(lam), baseline_records(train, test, lam, cascades, seed), lam)
            bar.update(1)
    return points


def _sweep_point(
    points: dict[str, list[dict[str, float]]],
    hrm: list[EpisodeRecord],
    baselines: dict[str, list[EpisodeRecord]],
    lam: float,
) -> None:
    """Every policy's summary at ``lam``, appended to its sweep points."""
    for name, rs in {"hrm": hrm, **baselines}.items():
        m = summarize(rs, lam)
        points.setdefault(name, []).append(
            {
                "lam": lam,
                "pass_rate": m["pass_rate"],
                "mean_cost": m["mean_cost"],
                "resolve_rate": m["resolve_rate"],
                "score": m["score"],
            }
        )


def _run_live(
    ckpt: Path,
    config: TrainConfig,
    split: str,
    mode: str,
    device: torch.device,
    lam: float,
    show: bool = True,
    backend: str | None = None,
    workers: int = 1,
    address: str | None = None,
) -> dict[str, Any] | None:
    """Get the runs the policy steps at ``lam`` into the store (``mode`` cached or live). SpawnEnv: on the
    backend (trainers/live.py), returning the fill's summary; a custom env: through its own ``mode`` in
    this process, one task at a time (returns None)."""
    if config.env_id == SPAWN_ENV_ID and not config.env_args:
        from hrm_spawn.trainers.live import run_filled

        env_cfg = config.env.model_copy(update={"split": split, "mode": mode})
        try:
            fill = run_filled(
                env_cfg,
                lambda env: load_actor(ckpt, env.observation_space, int(env.action_space.n), device, config),
                lam,
                backend or "local",
                workers,
                address,
                show,
            )
        except ValueError as exc:  # a backend or store the jobs cannot run on
            raise ConfigError(f"eval --mode {mode}: {exc}") from exc
        return fill.summary()
    if backend is not None or address is not None:
        raise ConfigError(
            f"eval: --backend runs SpawnEnv's jobs; env {config.env_id!r} runs its own {mode} mode in "
            "this process (leave --backend out)"
        )
    _run_in_process(ckpt, config, split, mode, device, lam, show)
    return None


def _run_in_process(
    ckpt: Path, config: TrainConfig, split: str, mode: str, device: torch.device, lam: float, show: bool
) -> None:
    """A custom env's own cached/live mode: the policy once per task, in this process; a progress
    display (a bar on a terminal, plain lines elsewhere) counts the tasks, as agents run."""
    env = make_env(config, split=split, mode=mode)
    make_actor = load_actor(ckpt, env.observation_space, int(env.action_space.n), device, config)
    tasks = env.unwrapped.tasks
    try:
        with progress(f"eval ({mode})", len(tasks), enabled=show, unit="tasks") as bar:
            for task in tasks:
                episode = run_gym_episodes(
                    [env], make_actor(1), [0], [{"instance_id": task.instance_id, "lam": lam}]
                )[0]
                bar.update(1, resolved=int(episode.resolved), cost=episode.total_cost)
    finally:
        env.close()


def cli_eval(args: argparse.Namespace) -> int:
    ckpt = resolve_checkpoint(args.checkpoint)
    overrides = list(getattr(args, "overrides", None) or [])
    if args.tasks:
        if not Path(args.tasks).expanduser().exists():
            raise ConfigError(f"--tasks: {args.tasks} does not exist")
        overrides.append(f"env.tasks={json.dumps(str(Path(args.tasks).expanduser()))}")
    if args.store:
        # a live or cached eval may start a store of its own; replay needs one to read
        if args.mode == "replay" and not Path(args.store).expanduser().is_file():
            raise ConfigError(f"--store: {args.store} does not exist")
        overrides.append(f"env.store={json.dumps(str(Path(args.store).expanduser()))}")
    workers = getattr(args, "workers", None)
    workers = 1 if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {workers})")
    report = evaluate(
        ckpt,
        overrides,
        args.split,
        args.lam,
        args.lambda_sweep,
        args.mode,
        backend=getattr(args, "backend", None),
        workers=workers,
        address=getattr(args, "address", None),
    )
    paths = write_report(report, Path(args.out))
    print(comparison_table(report))
    for key, value in report["targets"].items():
        print(f"{key}: {value}")
    print(f"report: {paths['json']}\nplot:   {paths['png']}", file=sys.stderr)
    return _live_exit(report["meta"].get("live"))


def _live_exit(live: dict[str, Any] | None) -> int:
    """A live/cached eval's summary on stderr; 1 when a job failed (as collect), else 0."""
    if live is None:
        return 0
    print(f"eval ({live['mode']}): " + json.dumps(live), file=sys.stderr)
    if not live["failed"]:
        return 0
    print(
        f"eval: {live['failed']} job(s) failed outside the agents (kept in the store's failed_jobs, not as "
        f"outcomes; the episodes of {live['unfinished']} stopped there and replay masks those runs); "
        "run the eval again to retry them",
        file=sys.stderr,
    )
    return 1
