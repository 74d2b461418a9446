"""Live and cached rollouts on a collect backend: fill the store for the policy, then replay it.

A greedy policy's episodes are fixed by the outcomes it sees, so they need not run agents in this
process. Each round replays every unfinished episode against the store in a ``FillEnv`` (SpawnEnv whose
runs come only from outcomes already *known* to this fill) up to the first run it lacks; those runs, one
per episode, go as one frontier to the executor (``collect.collect_jobs``: the collector's leases,
failure records and counts), and the next round replays again. An episode of ``max_steps`` steps needs
at most ``max_steps`` rounds. Then the caller evaluates from the store as in replay mode.

What is known: ``cached`` any outcome in the store (only missing runs are run: SpawnEnv's cached mode);
``live`` only the runs made by this fill (every run the policy steps is run afresh and replaces the
stored row: SpawnEnv's live mode). A job that fails (infrastructure: the line of
``jobs.infrastructure_fault``) is recorded in the store's ``failed_jobs``, never stored as an outcome;
the episode that needed it stops filling (``unfinished``), and the replay that follows masks that run
as it masks any run the store lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hrm_spawn.envs.agent_slots import AgentSlot, job_key, resolve_agents
from hrm_spawn.envs.collect import CollectCounts, collect_jobs, make_executor, runner_spec
from hrm_spawn.envs.env_config import EnvConfig, load_env_tasks
from hrm_spawn.envs.executors import Executor
from hrm_spawn.envs.replay import job_outcome
from hrm_spawn.envs.spawn_env import ReplayMissError, SpawnEnv
from hrm_spawn.envs.store import OutcomeKey, OutcomeStore
from hrm_spawn.trainers.rollout import Actor, Episode, run_gym_episodes

FILL_MODES = ("live", "cached")


class OutcomeNeeded(ReplayMissError):
    """The episode stepped a run this fill does not know yet; ``job`` is (task, agent, seed, start patch)."""

    def __init__(self, key: OutcomeKey, job: tuple[str, str, int, str]):
        super().__init__(f"outcome needed: {key}")
        self.key, self.job = key, job


class FillEnv(SpawnEnv):
    """SpawnEnv (its masks, features and rules, nothing masked for lack of an outcome) whose runs are read
    from the store when ``known(key)`` says so; any other run raises :class:`OutcomeNeeded`."""

    def __init__(
        self,
        config: Any,
        tasks: Sequence[Any],
        store: OutcomeStore,
        slots: list[AgentSlot],
        known: Callable[[OutcomeKey], bool],
    ):
        if config.mode not in FILL_MODES:
            raise ValueError(f"FillEnv: mode {config.mode!r} is not one of {FILL_MODES}")
        super().__init__(config, tasks=tasks, store=store, slots=slots)
        self.known = known

    def _outcome(self, k: int, seed: int, sha: str, patch: str):
        assert self.task is not None
        slot = self.slots[k]
        key = job_key(self.task.instance_id, slot, seed, patch)
        stored = self.store.get(key) if self.known(key) else None
        if stored is None:
            raise OutcomeNeeded(key, (self.task.instance_id, slot.name, seed, patch))
        return job_outcome(stored, self.unit_s, self.cost_unit, self.config.observe)


@dataclass
class FillReport:
    """What a fill did: the jobs' counts, the rounds, and the episodes it could not finish."""

    mode: str
    counts: CollectCounts = field(default_factory=CollectCounts)
    rounds: int = 0
    unfinished: list[str] = field(default_factory=list)  # tasks whose episode stopped at a failed job
    episodes: dict[str, Episode] = field(default_factory=dict)  # the finished ones, by task

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rounds": self.rounds,
            "episodes": len(self.episodes),
            "unfinished": sorted(self.unfinished),
            **self.counts.summary(),
        }


def fill_store(
    env: FillEnv,
    make_actor: Callable[[int], Actor],
    lam: float,
    executor: Callable[[], Executor],
    fill: FillReport,
    live_keys: set[OutcomeKey],
    progress: bool = True,
) -> FillReport:
    """Run ``env``'s tasks' episodes at ``lam`` round by round, filling the store on ``executor``.

    ``executor()`` gives the running executor (started on the first round that has jobs, so a fill with
    nothing to run starts no worker); ``live_keys`` is what a live fill knows (the runs it made;
    ``env.known`` reads it) and grows here.
    """
    active = [t.instance_id for t in env.tasks]
    for round_no in range(env.config.max_steps + 1):
        needs: dict[str, OutcomeNeeded] = {}
        for task_id in active:
            need = _episode_or_need(env, make_actor, task_id, lam, fill)
            if need is None:
                continue
            if need.key in fill.counts.failed_keys:  # its job failed in an earlier round: stop here
                fill.unfinished.append(task_id)
            else:
                needs[task_id] = need
        active = list(needs)
        if not active:
            return fill
        if round_no == env.config.max_steps:
            raise RuntimeError(f"fill: episodes still need runs after {round_no} rounds: {active[:3]}")
        frontier = list(dict.fromkeys(n.job for n in needs.values()))
        done = collect_jobs(
            env.tasks,
            env.slots,
            env.store,
            frontier,
            executor(),
            progress,
            f"eval ({fill.mode}) round {round_no + 1}",
            rerun=fill.mode == "live",
        )
        fill.counts.add(done)
        live_keys |= done.stored
        fill.rounds += 1
    return fill


def _episode_or_need(
    env: FillEnv, make_actor: Callable[[int], Actor], task_id: str, lam: float, fill: FillReport
) -> OutcomeNeeded | None:
    """Replay the task's episode from its start: the first run it lacks, or None (the episode is noted)."""
    try:
        (episode,) = run_gym_episodes([env], make_actor(1), [0], [{"instance_id": task_id, "lam": lam}])
    except OutcomeNeeded as need:
        return need
    fill.episodes[task_id] = episode
    return None


def fill_env(
    config: Any, tasks: Sequence[Any], store: OutcomeStore, slots: list[AgentSlot], live_keys: set[OutcomeKey]
) -> FillEnv:
    """The FillEnv of ``config.mode``: live knows ``live_keys`` only, cached the whole store."""
    known: Callable[[OutcomeKey], bool] = live_keys.__contains__ if config.mode == "live" else store.contains
    return FillEnv(config, tasks, store, slots, known)


def run_filled(
    env_cfg: EnvConfig,
    actor_for: Callable[[FillEnv], Callable[[int], Actor]],
    lam: float,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
) -> FillReport:
    """Fill ``env_cfg``'s store (its tasks, split and ``mode``) with the runs of the policy that
    ``actor_for(env)`` builds, on the ``backend`` (``local`` worker processes or ``ray``); see the module."""
    tasks = load_env_tasks(env_cfg)
    store = OutcomeStore(env_cfg.store_path())
    slots = resolve_agents(env_cfg.agents, env_cfg.budget)
    live_keys: set[OutcomeKey] = set()
    env = fill_env(env_cfg, tasks, store, slots, live_keys)
    make_actor = actor_for(env)
    with contextlib.ExitStack() as stack:
        started: list[Executor] = []

        def executor() -> Executor:
            if not started:
                spec = runner_spec(store, slots, env_cfg.sandbox)
                started.append(stack.enter_context(make_executor(backend, workers, spec, address)))
            return started[0]

        try:
            return fill_store(env, make_actor, lam, executor, FillReport(env_cfg.mode), live_keys, progress)
        finally:
            env.close()
