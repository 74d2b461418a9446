"""The oracle: the cheapest action sequence that reaches the best reachable score of a task.

It searches SpawnEnv's replay dynamics over the outcome store, knowing the hidden scores the policy
cannot see. A state is (spawns per agent, delegations per (agent, candidate), the best candidate by
visible pass-rate); the set of runs made fixes the cost, so a breadth-first walk over distinct states
finds every reachable state with its cost, and the answer is the cheapest (then shortest) state whose
submitted candidate has the best score. The sequence ends with halt unless a step or cost limit ends
the episode first (which submits the same candidate).

``State``, ``moves`` and ``advance`` are the replay dynamics of one task on its table, with the rules of
envs/episode.py; the empirical-Bayes tree (trainers/bayes_tree.py) walks the same states.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hrm_spawn.envs import episode as E
from hrm_spawn.envs.episode import EpisodeRules, JobOutcome
from hrm_spawn.envs.replay import TaskTable
from hrm_spawn.envs.store import CLEAN

_EPS = 1e-12


@dataclass
class OracleResult:
    instance_id: str
    actions: list[int]
    action_names: list[str]
    cost: float  # cost units
    steps: int
    score: float  # in the env's reward kind
    pass_rate: float
    resolved: bool
    states: int = 0  # states explored
    extra: dict[str, Any] = field(default_factory=dict)

    def episode_return(self, lam: float) -> float:
        return self.score - lam * self.cost

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "instance_id",
                "actions",
                "action_names",
                "cost",
                "steps",
                "score",
                "pass_rate",
                "resolved",
                "states",
            )
        }


class OracleError(RuntimeError):
    pass


JobKey = tuple[int, int, str]  # (agent index, seed, start sha): a TaskTable key


@dataclass(frozen=True)
class State:
    """A replay state: runs made per agent, delegations per (agent, candidate), the best run's key."""

    spawns: tuple[int, ...]
    delegs: frozenset  # {((agent, sha), count)}
    best: JobKey | None  # key of the job whose candidate is best

    @classmethod
    def start(cls, num_agents: int) -> State:
        return cls((0,) * num_agents, frozenset(), None)


def oracle(table: TaskTable, spec: EpisodeRules, max_states: int = 2_000_000) -> OracleResult:
    start = State.start(len(spec.agents))
    # state -> (cost, steps, parent, action)
    seen: dict[State, tuple[float, int, State | None, int]] = {start: (0.0, 0, None, 0)}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        cost, steps, _, _ = seen[state]
        if not E.within_limits(steps, cost, spec):
            continue  # a limit ended the episode here
        for action, key, job in moves(table, spec, state):
            nxt = advance(state, action, key, job, table, spec.layout)
            if nxt not in seen:
                seen[nxt] = (cost + job.cost, steps + 1, state, action)
                if len(seen) > max_states:
                    raise OracleError(f"oracle: task {table.instance_id} has more than {max_states} states")
                queue.append(nxt)
    return _answer(table, spec, seen)


def best_job(table: TaskTable, state: State) -> JobOutcome | None:
    return table.outcomes[state.best] if state.best else None


def moves(table: TaskTable, spec: EpisodeRules, state: State):
    """``(action, job key, run)`` of every spawn/delegate the masks allow whose outcome the table has.

    The step and cost limits are the caller's to check (``episode.within_limits``).
    """
    layout = spec.layout
    for k in range(layout.num_agents):
        key = (k, state.spawns[k], CLEAN)
        if E.spawn_open(state.spawns[k], spec) and key in table.outcomes:
            yield layout.spawn(k), key, table.outcomes[key]
    best = best_job(table, state)
    if best is None or not E.can_delegate(best.visible):
        return
    counts = dict(state.delegs)
    for k in range(layout.num_agents):
        seed = counts.get((k, best.sha), 0)
        key = (k, seed, best.sha)
        if E.delegate_open(seed, spec) and key in table.outcomes:
            yield layout.delegate(k), key, table.outcomes[key]


def advance(
    state: State, action: int, key: JobKey, job: JobOutcome, table: TaskTable, layout: E.ActionLayout
) -> State:
    """The state after running ``job`` (the outcome of ``action``, at table key ``key``)."""
    spawns, delegs = state.spawns, state.delegs
    kind, k = layout.decode(action)
    if kind == "spawn":
        spawns = spawns[:k] + (spawns[k] + 1,) + spawns[k + 1 :]
    else:
        counts = dict(delegs)
        counts[(k, key[2])] = key[1] + 1
        delegs = frozenset(counts.items())
    current = best_job(table, state)
    improves = E.improves(bool(job.sha), job.visible, current.visible if current else E.NO_CANDIDATE)
    return State(spawns, delegs, key if improves else state.best)


def _answer(table: TaskTable, spec: EpisodeRules, seen: dict) -> OracleResult:
    def score(state: State) -> float:
        job = best_job(table, state)
        return job.score(spec.reward) if job else 0.0

    top = max(score(s) for s in seen)
    goal = min((s for s in seen if score(s) >= top - _EPS), key=lambda s: (seen[s][0], seen[s][1]))
    actions: list[int] = []
    node: State | None = goal
    while node is not None and seen[node][2] is not None:
        actions.append(seen[node][3])
        node = seen[node][2]
    actions.reverse()
    cost, steps = seen[goal][0], seen[goal][1]
    if E.within_limits(steps, cost, spec):
        actions.append(E.HALT)
    job = best_job(table, goal)
    names = [spec.layout.name(a, spec.agents) for a in actions]
    return OracleResult(
        table.instance_id,
        actions,
        names,
        cost,
        steps,
        top,
        job.pass_rate if job else 0.0,
        bool(job.resolved) if job else False,
        len(seen),
    )


def oracle_for_env(env: Any, instance_id: str) -> OracleResult:
    """The oracle for one task of a SpawnEnv (any mode: the table is read from its store)."""
    return oracle(env.task_table(instance_id), EpisodeRules(env.config))
