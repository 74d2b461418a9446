"""The empirical-Bayes tree: the best adaptive policy when a task is drawn from a set of known tasks.

At each step it knows which of the known ("training") tasks are still consistent with what it has seen,
first their coarse failure profile, then each run's visible result (candidate or not, visible pass-rate
none/part/all, whether the run ended "ok"), and takes the action with the best expected return over
them: ``E[score of the submitted candidate] - λ · E[cost]``, solved exactly by dynamic programming over
those observation histories on the oracle's replay states (envs/oracle.py). It is what a perfectly
fitted learner would do: in sample no policy with the same observations does better, and held out
it is the reference a trained policy is compared with (a smoother prior could do better or worse on
new tasks). On new tasks an observation no known task showed makes it halt (keeping every task
instead moved the held-out score by 0.023 at most on the tinydb stores).
``benchmarks/learnability.py`` runs it in and out of sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hrm_spawn.envs import episode as E
from hrm_spawn.envs import oracle as replay_walk
from hrm_spawn.envs.episode import HALT, EpisodeRules, JobOutcome
from hrm_spawn.envs.features import TASK_FEATURES, task_features
from hrm_spawn.envs.oracle import State, best_job
from hrm_spawn.envs.replay import TaskTable
from hrm_spawn.trainers.report import EpisodeRecord

MIN_GROUP = 4  # fewest training tasks a failure-profile group needs before the tree trusts it alone


def seen(job: JobOutcome) -> tuple:
    """What a policy observes of a run: a candidate or not, its visible pass-rate (none/part/all), the status."""
    visible = "none" if job.sha is None or job.visible <= 0 else ("all" if job.visible >= 1 else "part")
    return (visible, job.status == "ok")


def profile_key(task, level: int) -> tuple:
    """Coarse failure profile at three levels: (size, main failure kind), (size,), ()."""
    feats = task_features(task)
    size = int(np.argmax(feats[:3])) if feats[:3].any() else 3
    kinds = feats[3:]
    main = TASK_FEATURES[3 + int(np.argmax(kinds))] if kinds.max() > 0 else "none"
    return [(size, main), (size,), ()][level]


@dataclass
class Walker:
    """One task's replay dynamics, on the oracle's states."""

    table: TaskTable
    spec: EpisodeRules

    def moves(self, state: State, steps: int, cost: float) -> dict[int, tuple]:
        """Valid non-halt actions -> (outcome key, run); none once a step or cost limit is reached."""
        if not E.within_limits(steps, cost, self.spec):
            return {}
        return {a: (key, job) for a, key, job in replay_walk.moves(self.table, self.spec, state)}

    def advance(self, state: State, action: int, key: tuple, job: JobOutcome) -> State:
        return replay_walk.advance(state, action, key, job, self.table, self.spec.layout)

    def score(self, state: State) -> float:
        job = best_job(self.table, state)
        return job.score(self.spec.reward) if job else 0.0


Member = tuple[int, State, float]  # a training task still consistent: its index, replay state, cost so far


class BayesTree:
    """The Bayes-optimal policy for the empirical distribution of ``walkers`` at one λ (memoised DP)."""

    def __init__(self, walkers: list[Walker], lam: float):
        self.walkers, self.lam = walkers, lam
        self.memo: dict[tuple, tuple[int, float]] = {}

    def best(self, members: tuple[Member, ...], hist: tuple, steps: int) -> tuple[int, float]:
        """(action, expected return from here) over ``members``, the tasks consistent with ``hist``."""
        key = (tuple(i for i, _, _ in members), hist)  # the states follow from the tasks and the history
        if key not in self.memo:
            self.memo[key] = self._solve(members, hist, steps)
        return self.memo[key]

    def _solve(self, members: tuple[Member, ...], hist: tuple, steps: int) -> tuple[int, float]:
        n = len(members)
        best = (HALT, float(np.mean([self.walkers[i].score(s) for i, s, _ in members])))  # halt: submit now
        options = [self.walkers[i].moves(s, steps, c) for i, s, c in members]
        for action in sorted(set.intersection(*(set(o) for o in options))):
            value, parts = 0.0, {}
            for (i, s, c), moves in zip(members, options, strict=True):
                key, job = moves[action]
                value -= self.lam * job.cost / n
                parts.setdefault(seen(job), []).append(
                    (i, self.walkers[i].advance(s, action, key, job), c + job.cost)
                )
            for obs, sub in parts.items():
                value += len(sub) / n * self.best(tuple(sub), (*hist, (action, obs)), steps + 1)[1]
            if value > best[1] + 1e-12:
                best = (action, value)
        return best

    def consistent(
        self, members: tuple[Member, ...], action: int, obs: tuple, steps: int
    ) -> tuple[Member, ...]:
        """The members whose run for ``action`` shows ``obs``, advanced past it."""
        out = []
        for i, s, c in members:
            key, job = self.walkers[i].moves(s, steps, c)[action]
            if seen(job) == obs:
                out.append((i, self.walkers[i].advance(s, action, key, job), c + job.cost))
        return tuple(out)


def kind_key(task, level: int) -> tuple:
    """The hidden modifier kinds first, then the failure profile: what better observations could buy."""
    return [tuple(sorted(set(task.modifier_kinds or ()))), profile_key(task, 0), ()][level]


GroupKey = Callable[[Any, int], tuple]


def group_keys(task, key: GroupKey) -> list[tuple]:
    """``task``'s key at each of the three levels, finest first."""
    return [key(task, level) for level in range(3)]


def root_group(
    mine: list[tuple], train_keys: list[list[tuple]], min_group: int = MIN_GROUP
) -> tuple[int, ...]:
    """The training tasks that share a task's keys (``group_keys``) at level 0, backing off to coarser levels."""
    for level in range(3):
        group = tuple(i for i, keys in enumerate(train_keys) if keys[level] == mine[level])
        if len(group) >= min_group or level == 2:
            return group
    raise AssertionError("unreachable")


def run_tree(
    train: Any, test: Any, lam: float, group_key: GroupKey = profile_key, min_group: int = MIN_GROUP
) -> list[EpisodeRecord]:
    """Records of each ``test`` task walked down the tree of the ``train`` tasks (``ReplaySet``s of
    trainers/evaluate.py); an observation no training task showed halts. ``group_key`` says which training
    tasks a new task starts out consistent with (default: the same failure profile)."""
    tree = BayesTree([Walker(t, train.spec) for t in train.tables], lam)
    start = State.start(len(test.spec.agents))
    train_keys = [group_keys(t, group_key) for t in train.tasks]
    records = []
    for task, table in zip(test.tasks, test.tables, strict=True):
        me = Walker(table, test.spec)
        group = root_group(group_keys(task, group_key), train_keys, min_group)
        members = tuple((i, start, 0.0) for i in group)
        state, cost, actions, hist = start, 0.0, [], ()
        while members:
            action, _ = tree.best(members, hist, len(actions))
            mine = me.moves(state, len(actions), cost)
            if action == HALT or action not in mine:
                break
            key, job = mine[action]
            members = tree.consistent(members, action, seen(job), len(actions))
            state, cost = me.advance(state, action, key, job), cost + job.cost
            actions.append(action)
            hist = (*hist, (action, seen(job)))
        records.append(_record(task, me, state, cost, actions))
    return records


def _record(task: Any, me: Walker, state: State, cost: float, actions: list[int]) -> EpisodeRecord:
    job = best_job(me.table, state)
    cut = not E.within_limits(len(actions), cost, me.spec)  # a limit ended it, not a halt
    return EpisodeRecord(
        task.instance_id,
        job.pass_rate if job else 0.0,
        bool(job.resolved) if job else False,
        cost,
        len(actions) + (0 if cut else 1),
        actions,
        list(getattr(task, "modifier_kinds", None) or []),
    )
