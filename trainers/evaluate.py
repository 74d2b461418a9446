"""hrm-spawn eval CHECKPOINT --tasks FILE [--store DB] [--split heldout] [--lambda X | --lambda-sweep] --out DIR

Runs the checkpoint's policy greedily (ACT Q: on its Q-head; PPO: the mode of its masked action
distribution) and every baseline on the chosen split, one episode per task, with the replay dynamics of
the outcome store (``BatchedReplayEnv``: the same masks, costs and rewards as SpawnEnv in replay mode).
Both kinds read λ as feature 0 of the observation, so the sweep feeds each λ the same way. ``best_cascade`` is chosen on the *train* split at each λ.
Writes DIR/report.json, DIR/report.md and DIR/pareto.png (trainers/report.py).

Modes: ``replay`` (default) looks outcomes up only. ``cached``/``live`` first run the policy through
SpawnEnv in that mode (running agents for outcomes the store lacks, recording them), then evaluate
everything from the store as in replay.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_spawn.envs.config import ConfigError
from hrm_spawn.trainers.act_q import Actor, Episode, PolicyActor, run_batched_episodes, run_gym_episodes
from hrm_spawn.trainers.baselines import (
    RandomActor,
    SequenceActor,
    cascade_candidates,
    cascade_name,
    halt_actor,
    single_sequence,
    spawn_all_sequence,
)
from hrm_spawn.trainers.checkpoint import load_into, load_train_config, resolve_checkpoint
from hrm_spawn.trainers.report import EpisodeRecord, build_report, comparison_table, summarize, write_report

RANDOM_REPEATS = 5  # random's episodes per task (its mean is noisy otherwise)
CASCADE_MAX_LEN = 3


@dataclass
class ReplaySet:
    """Tasks with their outcome tables and the episode rules: everything a batched replay needs."""

    tasks: list[Any]
    tables: list[Any]
    spec: Any  # envs.replay.ReplaySpec
    observation_space: Any = None  # SpawnEnv's, which sizes a PPO policy
    oracle: list[list[int]] | None = None  # cached oracle action sequences

    def run(
        self,
        make_actor: Callable[[int], Actor],
        lam: float,
        task_rows: np.ndarray | None = None,
        with_tokens: bool = True,
    ) -> list[Episode]:
        from hrm_spawn.envs.replay import BatchedReplayEnv

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


def replay_sets(env_cfg: Any, split: str) -> tuple[ReplaySet, ReplaySet]:
    """(the train split, the evaluated split) of the env config's tasks, tables read from its store."""
    from hrm_spawn.envs.replay import ReplaySpec
    from hrm_spawn.envs.spawn_env import SpawnEnv

    out = []
    for name in ("train", split):
        cfg = env_cfg.model_copy(update={"split": name, "mode": "replay"})
        env = SpawnEnv(cfg)
        out.append(
            ReplaySet(list(env.tasks), env.tables(), ReplaySpec.from_config(cfg), env.observation_space)
        )
        env.close()
    return out[0], out[1]


def load_policy_from_checkpoint(ckpt: Path, num_actions: int, num_features: int, device: torch.device):
    from hrm_spawn.policies.spawn_policy import SpawnPolicy

    config = load_train_config(ckpt)
    policy = SpawnPolicy(config.policy, num_actions, num_features)
    load_into(policy, ckpt, f"a policy for {num_actions} actions and {num_features} features")
    return policy.to(device).eval()


ActorFactory = Callable[[int], Actor]


def load_actor(ckpt: Path, observation_space: Any, num_actions: int, device: torch.device) -> ActorFactory:
    """``make_actor(n)`` running the checkpoint's policy greedily, whichever trainer wrote it."""
    algo = load_train_config(ckpt).algo
    if algo == "ppo":
        from hrm_spawn.trainers.ppo import PPOActor, load_ppo_policy

        ppo = load_ppo_policy(ckpt, observation_space, num_actions, device)
        return lambda _: PPOActor(ppo, device)
    if algo != "act_q":
        raise ConfigError(f"{ckpt}: eval knows ACT Q and PPO checkpoints; this one is {algo!r}")
    num_features = int(observation_space["features"].shape[0])
    policy = load_policy_from_checkpoint(ckpt, num_actions, num_features, device)
    return lambda _: PolicyActor(policy, device)


# ---------------------------------------------------------------------------------------------------


class CascadeTable:
    """Every candidate cascade's mean pass-rate and cost on a replay set (λ-free; scores follow)."""

    def __init__(self, rs: ReplaySet, max_len: int = CASCADE_MAX_LEN):
        k = len(rs.spec.agents)
        self.seqs = cascade_candidates(k, min(max_len, rs.spec.max_steps))
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


def evaluate(
    ckpt: Path,
    env_overrides: dict[str, Any],
    split: str,
    lam: float | None,
    sweep: bool,
    mode: str = "replay",
    device: str = "cpu",
) -> dict[str, Any]:
    """The report (dict) for a checkpoint; see trainers/report.py for the schema."""
    from hrm_spawn.envs.spawn_env import load_env_config

    config = load_train_config(ckpt)
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    env_cfg = load_env_config({**config.env, **{k: v for k, v in env_overrides.items() if v is not None}})
    train, test = replay_sets(env_cfg, split)
    dev = torch.device(device)
    if mode != "replay":
        _run_live(ckpt, env_cfg, split, mode, dev)
        train, test = replay_sets(env_cfg, split)  # re-read: the store now has the new outcomes
    make_actor = load_actor(ckpt, test.observation_space, test.spec.layout.n, dev)
    lam_range = config.lam
    if lam is None:
        lam = (lam_range.low + lam_range.high) / 2
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
        )
    meta = {
        "checkpoint": str(ckpt),
        "algo": config.algo,
        "tasks": env_cfg.tasks,
        "store": str(env_cfg.store_path()),
        "split": split,
        "num_tasks": len(test.tasks),
        "num_train_tasks": len(train.tasks),
        "mode": mode,
        "agents": test.spec.agents,
        "train_lambda_range": [lam_range.low, lam_range.high],
        "cost_unit": "one full test run of the task",
        "eval_seconds": round(time.perf_counter() - start, 3),
    }
    return build_report(policies, lam, meta, sweep_points)


def sweep_records(
    hrm: Callable[[float], list[EpisodeRecord]],
    train: ReplaySet,
    test: ReplaySet,
    cascades: CascadeTable,
    lams: list[float],
    seed: int = 0,
) -> dict[str, list[dict[str, float]]]:
    """The λ-sweep points of the report: ``hrm(λ)``'s records and every baseline's, summarised per λ."""
    points: dict[str, list[dict[str, float]]] = {}
    for lam in lams:
        recs = {"hrm": hrm(lam), **baseline_records(train, test, lam, cascades, seed)}
        for name, rs in recs.items():
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
    return points


def _run_live(ckpt: Path, env_cfg: Any, split: str, mode: str, device: torch.device) -> None:
    """Run the policy once per task through SpawnEnv in ``mode`` so its outcomes land in the store."""
    from hrm_spawn.envs.spawn_env import SpawnEnv

    env = SpawnEnv(env_cfg.model_copy(update={"split": split, "mode": mode}))
    make_actor = load_actor(ckpt, env.observation_space, int(env.action_space.n), device)
    lam = env_cfg.lam if isinstance(env_cfg.lam, float) else sum(env_cfg.lam) / 2
    for task in env.tasks:
        run_gym_episodes([env], make_actor(1), [0], [{"instance_id": task.instance_id, "lam": lam}])
    env.close()


def cli_eval(args: argparse.Namespace) -> int:
    ckpt = resolve_checkpoint(args.checkpoint)
    overrides = {"tasks": str(Path(args.tasks).expanduser()), "store": args.store}
    if not Path(overrides["tasks"]).exists():
        raise ConfigError(f"--tasks: {args.tasks} does not exist")
    if args.store and not Path(args.store).expanduser().is_file():
        raise ConfigError(f"--store: {args.store} does not exist")
    report = evaluate(ckpt, overrides, args.split, args.lam, args.lambda_sweep, args.mode)
    paths = write_report(report, Path(args.out))
    print(comparison_table(report))
    for key, value in report["targets"].items():
        print(f"{key}: {value}")
    print(f"report: {paths['json']}\nplot:   {paths['png']}", file=sys.stderr)
    return 0
