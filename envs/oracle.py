"""The oracle: the cheapest action sequence that reaches the best reachable score of a task.

It searches SpawnEnv's replay dynamics over the outcome store, knowing the hidden scores the policy
cannot see. A state is (spawns per agent, delegations per (agent, candidate), the best candidate by
visible pass-rate); the set of runs made fixes the cost, so a breadth-first walk over distinct states
finds every reachable state with its cost, and the answer is the cheapest (then shortest) state whose
submitted candidate has the best score. The sequence ends with halt unless a step or cost limit ends
the episode first (which submits the same candidate).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hrm_spawn.envs.replay import JobOutcome, ReplaySpec, TaskTable
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


@dataclass(frozen=True)
class _State:
    spawns: tuple[int, ...]
    delegs: frozenset  # {((agent, sha), count)}
    best: tuple[int, int, str] | None  # key of the job whose candidate is best


def oracle(table: TaskTable, spec: ReplaySpec, max_states: int = 2_000_000) -> OracleResult:
    K = len(spec.agents)
    start = _State((0,) * K, frozenset(), None)
    # state -> (cost, steps, parent, action)
    seen: dict[_State, tuple[float, int, _State | None, int]] = {start: (0.0, 0, None, 0)}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        cost, steps, _, _ = seen[state]
        if steps >= spec.max_steps or cost >= spec.max_cost:
            continue  # a limit ended the episode here
        for action, key, job in _moves(table, spec, state):
            nxt = _advance(state, action, key, job, table, K)
            if nxt not in seen:
                seen[nxt] = (cost + job.cost, steps + 1, state, action)
                if len(seen) > max_states:
                    raise OracleError(f"oracle: task {table.instance_id} has more than {max_states} states")
                queue.append(nxt)
    return _answer(table, spec, seen)


def _best_job(table: TaskTable, state: _State) -> JobOutcome | None:
    return table.outcomes[state.best] if state.best else None


def _moves(table: TaskTable, spec: ReplaySpec, state: _State):
    K = len(spec.agents)
    for k in range(K):
        key = (k, state.spawns[k], CLEAN)
        if state.spawns[k] < spec.seeds_per_agent and key in table.outcomes:
            yield 1 + k, key, table.outcomes[key]
    best = _best_job(table, state)
    if best is None or best.visible >= 1.0:
        return
    counts = dict(state.delegs)
    for k in range(K):
        seed = counts.get((k, best.sha), 0)
        key = (k, seed, best.sha)
        if seed < spec.delegate_seeds and key in table.outcomes:
            yield 1 + K + k, key, table.outcomes[key]


def _advance(
    state: _State, action: int, key: tuple[int, int, str], job: JobOutcome, table: TaskTable, K: int
) -> _State:
    spawns, delegs = state.spawns, state.delegs
    k = key[0]
    if action <= K:
        spawns = spawns[:k] + (spawns[k] + 1,) + spawns[k + 1 :]
    else:
        counts = dict(delegs)
        counts[(k, key[2])] = key[1] + 1
        delegs = frozenset(counts.items())
    best = state.best
    current = _best_job(table, state)
    if job.sha and (current is None or job.visible > current.visible):
        best = key
    return _State(spawns, delegs, best)


def _answer(table: TaskTable, spec: ReplaySpec, seen: dict) -> OracleResult:
    def score(state: _State) -> float:
        job = _best_job(table, state)
        return job.score(spec.reward) if job else 0.0

    top = max(score(s) for s in seen)
    goal = min((s for s in seen if score(s) >= top - _EPS), key=lambda s: (seen[s][0], seen[s][1]))
    actions: list[int] = []
    node: _State | None = goal
    while node is not None and seen[node][2] is not None:
        actions.append(seen[node][3])
        node = seen[node][2]
    actions.reverse()
    cost, steps = seen[goal][0], seen[goal][1]
    if not (steps >= spec.max_steps or cost >= spec.max_cost):
        actions.append(0)
    job = _best_job(table, goal)
    names = [_name(a, spec.agents) for a in actions]
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


def _name(action: int, agents: list[str]) -> str:
    K = len(agents)
    if action == 0:
        return "halt"
    return f"spawn {agents[action - 1]}" if action <= K else f"delegate {agents[action - 1 - K]}"


def oracle_for_env(env: Any, instance_id: str) -> OracleResult:
    """The oracle for one task of a SpawnEnv (any mode: the table is read from its store)."""
    return oracle(env.task_table(instance_id), ReplaySpec.from_config(env.config))
