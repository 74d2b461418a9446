"""Eval's live and cached rollouts on a collect backend: fill the store for the policy, then replay it.

A greedy policy's episodes are fixed by the outcomes it sees, so they need not run agents in this
process. Each round replays every unfinished episode in a ``FillEnv`` (trainers/backend_env.py) up to
the first run it lacks; those runs, one per episode, go as one frontier to the executor
(``BackendJobs.run``: collect's leases, failure records and counts), and the next round replays again.
An episode of ``max_steps`` steps needs at most ``max_steps`` rounds. Then the caller evaluates from
the store as in replay mode, so the report is replay's, number for number.

``cached`` runs only what the store lacks; ``live`` runs every run the policy steps afresh (a fresh run
replaces the stored row). A job that fails (infrastructure: the line of ``jobs.infrastructure_fault``)
is recorded in the store's ``failed_jobs`` and never stored as an outcome; the episode that needed it
stops filling (``unfinished``), and the replay that follows masks that run as it masks any run the
store lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hrm_spawn.envs.agent_slots import resolve_agents
from hrm_spawn.envs.env_config import EnvConfig
from hrm_spawn.envs.store import OutcomeStore
from hrm_spawn.trainers.backend_env import BackendJobs, FillEnv, OutcomeNeeded
from hrm_spawn.trainers.rollout import Actor, Episode, run_gym_episodes


@dataclass
class FillReport:
    """What a fill did: the rounds, the episodes it finished and those a failed job stopped."""

    mode: str
    jobs: BackendJobs
    unfinished: list[str] = field(default_factory=list)  # tasks whose episode stopped at a failed job
    episodes: dict[str, Episode] = field(default_factory=dict)  # the finished ones, by task

    def summary(self) -> dict[str, Any]:
        """Collect's summary of the jobs (ran, skipped, failed by kind, ...) with the rounds and episodes."""
        return {
            "mode": self.mode,
            "rounds": self.jobs.rounds,
            "episodes": len(self.episodes),
            "unfinished": sorted(self.unfinished),
            **self.jobs.counts.summary(),
        }


def fill_store(env: FillEnv, make_actor: Callable[[int], Actor], lam: float) -> FillReport:
    """Run every task's episode of ``env`` at ``lam``, round by round, filling the store (see the module)."""
    fill = FillReport(env.config.mode, env.jobs)
    active = [t.instance_id for t in env.tasks]
    for round_no in range(env.config.max_steps + 1):
        needs: dict[str, OutcomeNeeded] = {}
        for task_id in active:
            need = _episode_or_need(env, make_actor, task_id, lam, fill)
            if need is not None:
                needs[task_id] = need
        active = list(needs)
        if not active:
            return fill
        if round_no == env.config.max_steps:  # each round moves every active episode one step on
            raise RuntimeError(f"fill: episodes still need runs after {round_no} rounds: {active[:3]}")
        env.jobs.run(list(needs.values()), f"eval ({fill.mode}) round {round_no + 1}")
    return fill


def _episode_or_need(
    env: FillEnv, make_actor: Callable[[int], Actor], task_id: str, lam: float, fill: FillReport
) -> OutcomeNeeded | None:
    """Replay the task's episode from its start: the first run it lacks, or None (the episode is noted)."""
    try:
        (episode,) = run_gym_episodes([env], make_actor(1), [0], [{"instance_id": task_id, "lam": lam}])
    except OutcomeNeeded as need:
        return need
    if task_id in env.stopped_by_failure:  # a failed job ended it (truncated): no policy episode
        fill.unfinished.append(task_id)
    else:
        fill.episodes[task_id] = episode
    return None


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
    ``actor_for(env)`` builds, on ``backend`` (``local`` worker processes or ``ray``)."""
    store = OutcomeStore(env_cfg.store_path())
    slots = resolve_agents(env_cfg.agents, env_cfg.budget)
    jobs = BackendJobs(env_cfg.mode, store, slots, env_cfg.sandbox, backend, workers, address, progress)
    with jobs:
        env = FillEnv(env_cfg, jobs)
        try:
            return fill_store(env, actor_for(env), lam)
        finally:
            env.close()
