"""Replay from the outcome store: per-task outcome tables, ``load_replay`` and a batched numpy env.

``TaskTable`` is one task's outcomes, keyed by (agent index, seed, start-patch sha), reduced to what an
episode needs (``episode.JobOutcome``: candidate sha, visible pass-rate, cost, hidden score). Costs are in
the store's unit (``OutcomeStore.cost_unit``): test runs for outcomes collected here, USD or tokens for
tables imported from other harnesses; the table and the ``Replay`` carry it, so reports can name it.
SpawnEnv's replay mode, the oracle and ``BatchedReplayEnv`` all read it, so they share one set of numbers.

``load_replay(env_config)`` gives the tasks, their tables and the episode rules of a config without
building an env (train and eval read them so).

``BatchedReplayEnv`` steps N episodes at once with array operations over padded tables; it applies the
rules of envs/episode.py to arrays (masks, rewards, features; tokens as envs/features.py writes them;
missing outcomes are masked) and auto-resets finished episodes in the same step, returning their final
figures. envs/vector.py wraps it as a gymnasium ``VectorEnv`` and an SB3 ``VecEnv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hrm_spawn.envs import episode as E
from hrm_spawn.envs import features as F
from hrm_spawn.envs.episode import EpisodeRules, JobOutcome
from hrm_spawn.envs.store import CLEAN, DEFAULT_COST_UNIT, Outcome, OutcomeStore, patch_sha

if TYPE_CHECKING:
    from hrm_spawn.envs.agent_slots import AgentSlot
    from hrm_spawn.envs.env_config import EnvConfig
    from hrm_spawn.envs.tasks import TaskInstance

ReplaySpec = EpisodeRules  # the rules a replay follows, derived from the env config (its older name)


# What the policy may see of a run (``EnvConfig.observe``), as reports state it.
OBSERVE = {
    "agent": "the pass-rate of the run's own visible test run (a run imported from a table reports none: 0)",
    "none": "nothing (visible pass-rate 0 for every run)",
    "verifier": "a verifier's verdict: the hidden resolved flag (1 or 0)",
}
# A cost unit as reports and plots name it.
COST_UNIT_LABELS = {
    "test_runs": "test runs",
    "test_executions": "test executions",
    "usd": "USD",
    "tokens": "tokens",
}
# The units a store's runs can be costed in besides its own (``EnvConfig.cost_unit``): runs collected
# here record both their sandbox seconds and how many test executions they made.
COSTABLE_UNITS = {"test_runs": ("test_runs", "test_executions")}


def cost_unit_label(unit: str) -> str:
    """``usd`` -> ``USD``: the unit as a report says it (a unit this project does not know, as it is)."""
    return COST_UNIT_LABELS.get(unit, unit)


def per_cost_unit(unit: str) -> str:
    """What λ is per: ``per test run``, ``per test execution``, ``per USD``, ``per token``."""
    one = {"test_runs": "test run", "test_executions": "test execution", "tokens": "token"}
    return f"per {one.get(unit, cost_unit_label(unit))}"


def env_cost_unit(store: OutcomeStore, chosen: str | None = None) -> str:
    """The unit an env costs runs in: ``chosen`` (``EnvConfig.cost_unit``) when the store's runs record it,
    else the store's own (``OutcomeStore.cost_unit``)."""
    stored = store.cost_unit
    if chosen is None or chosen == stored:
        return stored
    allowed = COSTABLE_UNITS.get(stored, (stored,))
    if chosen not in allowed:
        raise ValueError(
            f"env.cost_unit={chosen!r}: the store {store.path} counts cost in {stored!r}, so its runs can "
            f"be costed in {', '.join(allowed)} only"
        )
    return chosen


def cost_unit_s(task: TaskInstance) -> float:
    """Seconds per test-run cost unit: one full test run of the task (1 s when the task does not say)."""
    return float(task.test_run_s) if task.test_run_s else 1.0


def observed(outcome: Outcome, observe: str = "agent") -> float:
    """The visible pass-rate of a run under the env's ``observe`` switch: ``agent`` what the run reported
    itself (its own test run; 0 for a run imported from a table), ``none`` nothing (0), ``verifier`` the
    hidden resolved flag as a verifier's verdict (1 or 0)."""
    if observe == "agent":
        return float(outcome.result.visible_pass_rate)
    if observe == "none":
        return 0.0
    if observe == "verifier":
        return float(outcome.evaluation.resolved)
    raise ValueError(f"observe must be one of {', '.join(OBSERVE)}, not {observe!r}")


def job_outcome(
    outcome: Outcome, unit_s: float, cost_unit: str = DEFAULT_COST_UNIT, observe: str = "agent"
) -> JobOutcome:
    """One stored run as an episode sees it; its cost in the store's unit (``cost_unit``: test runs of
    ``unit_s`` seconds, USD or tokens), so an imported run's dollars are what λ weighs, and what the
    policy sees of it as ``observe`` says."""
    result, evaluation = outcome.result, outcome.evaluation
    return JobOutcome(
        sha=patch_sha(result.patch) if result.patch else None,
        patch=result.patch,
        visible=observed(outcome, observe),
        cost=float(result.cost.in_unit(cost_unit, unit_s)),
        pass_rate=float(evaluation.pass_rate),
        resolved=bool(evaluation.resolved),
        status=result.status,
    )


@dataclass
class TaskTable:
    instance_id: str
    unit_s: float  # seconds of one full test run (the test_runs unit)
    outcomes: dict[tuple[int, int, str], JobOutcome] = field(default_factory=dict)  # (agent, seed, start sha)
    cost_unit: str = DEFAULT_COST_UNIT  # what the outcomes' costs count (the store's unit)
    observe: str = "agent"  # what the outcomes' visible pass-rates are (OBSERVE)

    def candidates(self) -> list[str]:
        """Distinct candidate shas, in a fixed order."""
        return sorted({j.sha for j in self.outcomes.values() if j.sha})


def build_task_table(
    task: TaskInstance,
    store: OutcomeStore,
    slots: Sequence[AgentSlot],
    observe: str = "agent",
    cost_unit: str | None = None,
) -> TaskTable:
    """One task's outcomes from ``store``, costed in ``cost_unit`` (None: the store's unit)."""
    index = {(s.name, s.version): k for k, s in enumerate(slots)}
    unit = env_cost_unit(store, cost_unit)
    table = TaskTable(task.instance_id, cost_unit_s(task), cost_unit=unit, observe=observe)
    for key, outcome in store.iter_task(task.instance_id):
        k = index.get((key.agent, key.agent_version))
        if k is not None:
            table.outcomes[(k, key.seed, key.start_patch_sha)] = job_outcome(
                outcome, table.unit_s, table.cost_unit, observe
            )
    return table


def tables_cost_unit(tables: Sequence[TaskTable]) -> str:
    """The one cost unit of a replay's tables (they come from one store; mixed units are refused)."""
    return _the_one(tables, "cost_unit", DEFAULT_COST_UNIT)


def tables_observe(tables: Sequence[TaskTable]) -> str:
    """What the policy sees of a run in these tables (``OBSERVE``; one setting for a replay)."""
    return _the_one(tables, "observe", "agent")


def _the_one(tables: Sequence[TaskTable], name: str, default: str) -> str:
    values = sorted({getattr(t, name) for t in tables})
    if len(values) > 1:
        raise ValueError(f"replay: the outcome tables differ in {name} {values}; one replay needs one")
    return values[0] if values else default


def check_tables(tables: Sequence[TaskTable], store: OutcomeStore, slots: Sequence[AgentSlot]) -> None:
    """Refuse a replay in which no task has a single outcome (the store is for other agents or budgets)."""
    if any(table.outcomes for table in tables):
        return
    stored = sorted({f"{k.agent}@{k.agent_version}" for k in store.keys()})[:10]  # noqa: SIM118 (a store, not a dict)
    raise ValueError(
        f"replay: the store {store.path} has no outcomes for these tasks and agents "
        f"{[f'{s.name}@{s.version}' for s in slots]} (run hrm-spawn collect); it holds {stored or 'nothing'}: "
        "a collect with a budget override records 'name@version+budget.<hash>', so pass the same "
        "budget.* overrides here"
    )


@dataclass
class Replay:
    """Tasks with their outcome tables and the episode rules: everything a batched replay needs."""

    tasks: list[TaskInstance]
    tables: list[TaskTable]
    rules: EpisodeRules

    @property
    def spec(self) -> EpisodeRules:
        return self.rules

    @property
    def cost_unit(self) -> str:
        """What costs (and so ``max_cost`` and λ) count: ``test_runs``, ``test_executions``, ``usd`` or
        ``tokens``."""
        return tables_cost_unit(self.tables)

    @property
    def observe(self) -> str:
        """What the policy sees of a run: ``agent``, ``none`` or ``verifier`` (``OBSERVE``)."""
        return tables_observe(self.tables)


def load_replay(
    config: EnvConfig,
    tasks: Sequence[TaskInstance] | None = None,
    store: OutcomeStore | None = None,
    slots: Sequence[AgentSlot] | None = None,
) -> Replay:
    """The config's tasks (split as it says), their tables from its store, and its rules; no env is built.

    ``tasks``/``store``/``slots`` given in memory are used instead of loading them (a custom env's).
    """
    from hrm_spawn.envs.agent_slots import resolve_agents
    from hrm_spawn.envs.env_config import load_env_tasks, split_env_tasks

    chosen = (
        split_env_tasks(config, list(tasks), "the tasks given in memory")
        if tasks is not None
        else load_env_tasks(config)
    )
    if store is None:
        path = config.store_path()
        if not path.is_file():
            raise FileNotFoundError(f"replay: outcome store {path} does not exist (run hrm-spawn collect)")
        store = OutcomeStore(path)
    slots = list(slots) if slots is not None else resolve_agents(config.agents, config.budget, build=False)
    tables = [build_task_table(task, store, slots, config.observe, config.cost_unit) for task in chosen]
    check_tables(tables, store, slots)
    return Replay(chosen, tables, EpisodeRules(config))


class BatchedReplayEnv:
    """N replay episodes stepped together. ``step(actions) -> (obs, reward, terminated, truncated, final)``.

    ``final`` holds per-env arrays for episodes that ended this step (``done``, ``pass_rate``,
    ``resolved``, ``cost``, ``steps``, ``ret``, ``task``); those envs are already reset in ``obs``.
    """

    def __init__(
        self,
        tasks: Sequence[TaskInstance],
        tables: Sequence[TaskTable],
        spec: ReplaySpec,
        num_envs: int = 1024,
        seed: int | None = None,
        with_tokens: bool = True,
    ):
        if len(tasks) != len(tables) or not tasks:
            raise ValueError("BatchedReplayEnv: needs one table per task and at least one task")
        self.spec, self.num_envs, self.with_tokens = spec, num_envs, with_tokens
        self.K, self.S, self.D = len(spec.agents), spec.seeds_per_agent, spec.delegate_seeds
        self.layout = E.ActionLayout(self.K)
        self.num_actions = self.layout.n
        self.task_ids = [t.instance_id for t in tasks]
        self.rng = np.random.default_rng(seed)
        self.slots = F.history_slots(spec.seq_len, spec.max_steps)
        self._build(tasks, tables)
        n, k = num_envs, self.K
        self.t = np.zeros(n, np.int64)
        self.step_no = np.zeros(n, np.int64)
        self.cost = np.zeros(n)
        self.ret = np.zeros(n)
        self.lam = np.zeros(n)
        self.spawns = np.zeros((n, k), np.int64)
        self.delegs = np.zeros((n, self.C, k), np.int64)
        self.deleg_total = np.zeros((n, k), np.int64)
        self.best = np.full(n, -1, np.int64)
        self.best_vis = np.full(n, E.NO_CANDIDATE)
        self.best_pass = np.zeros(n)  # the hidden figures of the best candidate's run
        self.best_res = np.zeros(n, bool)
        self.last_vis = np.zeros((n, k))
        self.last_cost = np.zeros((n, k))
        self.tokens = np.zeros((n, spec.seq_len), np.int64)
        self._rows = np.arange(n)

    # -- tables ------------------------------------------------------------------------------------
    def _build(self, tasks: Sequence[TaskInstance], tables: Sequence[TaskTable]) -> None:
        spec, K, S, D, W = self.spec, self.K, self.S, self.D, F.HIST_WIDTH
        cands = [tb.candidates() for tb in tables]
        self.C = max(1, max(len(c) for c in cands))
        T = len(tables)
        shape_s, shape_d = (T, K, S), (T, self.C, K, D)
        self.sp = {name: np.zeros(shape_s, dt) for name, dt in _JOB_FIELDS}
        self.dl = {name: np.zeros(shape_d, dt) for name, dt in _JOB_FIELDS}
        self.sp_hist = np.zeros((*shape_s, W), np.int64)
        self.dl_hist = np.zeros((*shape_d, W), np.int64)
        self.static = np.stack(
            [F.task_tokens(t, spec.seq_len, spec.max_steps, spec.task_text) for t in tasks]
        )
        self.task_feats = np.stack([F.task_features(t, spec.task_features) for t in tasks])
        for ti, (table, names) in enumerate(zip(tables, cands, strict=True)):
            cidx = {sha: c for c, sha in enumerate(names)}
            for (k, seed, start), job in table.outcomes.items():
                if start == CLEAN:
                    if seed >= S:
                        continue
                    where, hist, idx = self.sp, self.sp_hist, (ti, k, seed)
                else:
                    if seed >= D or start not in cidx:
                        continue
                    where, hist, idx = self.dl, self.dl_hist, (ti, cidx[start], k, seed)
                where["ok"][idx] = True
                where["cand"][idx] = cidx[job.sha] if job.sha else -1
                where["vis"][idx] = job.visible
                where["cost"][idx] = job.cost
                where["pass"][idx] = job.pass_rate
                where["res"][idx] = job.resolved
                sp = self.spec
                hist[idx] = F.history_entry(
                    start != CLEAN, sp.agents[k], job.visible, job.cost, job.status, sp.max_cost, sp.cost_bin
                )

    # -- episodes ----------------------------------------------------------------------------------
    @classmethod
    def from_replay(
        cls, replay: Replay, num_envs: int = 1024, seed: int | None = None, with_tokens: bool = True
    ):
        return cls(replay.tasks, replay.tables, replay.rules, num_envs, seed, with_tokens)

    def _sample_lam(self, count: int) -> np.ndarray:
        return E.sample_lam(self.spec.lam, self.rng, count)

    def reset_envs(
        self, idx: np.ndarray, task: np.ndarray | None = None, lam: np.ndarray | None = None
    ) -> None:
        idx = np.asarray(idx, np.int64)
        if idx.size == 0:
            return
        self.t[idx] = self.rng.integers(len(self.task_ids), size=idx.size) if task is None else task
        self.lam[idx] = self._sample_lam(idx.size) if lam is None else lam
        for arr in (
            self.step_no,
            self.cost,
            self.ret,
            self.spawns,
            self.delegs,
            self.deleg_total,
            self.last_vis,
            self.last_cost,
        ):
            arr[idx] = 0
        self.best[idx] = -1
        self.best_vis[idx] = E.NO_CANDIDATE
        self.best_pass[idx] = 0.0
        self.best_res[idx] = False
        if self.with_tokens:
            self.tokens[idx] = self.static[self.t[idx]]

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.reset_envs(self._rows)
        return self.observe()

    def action_masks(self) -> np.ndarray:
        rules, S, D = self.spec, self.S, self.D
        t, ks = self.t[:, None], np.arange(self.K)[None, :]
        spawn_ok = E.spawn_open(self.spawns, rules) & self.sp["ok"][t, ks, np.minimum(self.spawns, S - 1)]
        bc = np.maximum(self.best, 0)[:, None]
        d = self.delegs[self._rows[:, None], bc, ks]
        delegate_ok = E.delegate_open(d, rules) & self.dl["ok"][t, bc, ks, np.minimum(d, D - 1)]
        within = E.within_limits(self.step_no, self.cost, rules)
        return E.action_mask(self.layout, within, spawn_ok, delegate_ok, self.best_vis)

    def halt_value(self) -> np.ndarray:
        """Hidden score a halt would submit now, per row (0 without a candidate); for trainers' targets."""
        return np.where(self.best >= 0, E.score(self.best_pass, self.best_res, self.spec.reward), 0.0)

    def features(self) -> np.ndarray:
        return E.observation_features(
            self.lam,
            self.step_no,
            self.cost,
            self.best_vis,
            self.task_feats[self.t],
            self.spawns,
            self.deleg_total,
            self.last_vis,
            self.last_cost,
            self.spec,
        )

    def observe(self) -> dict[str, np.ndarray]:
        obs = {"features": self.features(), "action_mask": self.action_masks().astype(np.int8)}
        if self.with_tokens:
            obs["tokens"] = self.tokens.copy()
        return obs

    def step(self, actions: np.ndarray, final_obs: bool = False):
        """One step of every row; with ``final_obs``, ``final["obs"]`` holds the rows' last observation
        before their auto-reset when any row finished (vector-env wrappers hand it on as the terminal
        observation)."""
        actions = np.asarray(actions, np.int64)
        mask = self.action_masks()
        if (
            actions.shape != (self.num_envs,)
            or not mask[self._rows, np.clip(actions, 0, self.num_actions - 1)].all()
            or (actions < 0).any()
            or (actions >= self.num_actions).any()
        ):
            bad = np.flatnonzero(
                (actions < 0)
                | (actions >= self.num_actions)
                | ~mask[self._rows, np.clip(actions, 0, self.num_actions - 1)]
            )
            raise ValueError(
                f"BatchedReplayEnv.step: masked or invalid actions at envs {bad[:10].tolist()} "
                f"(actions {actions[bad[:10]].tolist()})"
            )
        rules, rows, t = self.spec, self._rows, self.t
        halt = actions == E.HALT
        is_sp = self.layout.is_spawn(actions)
        act = ~halt
        k = self.layout.agent_of(actions)
        s_seed = np.minimum(self.spawns[rows, k], self.S - 1)
        bc = np.maximum(self.best, 0)
        d_seed = np.minimum(self.delegs[rows, bc, k], self.D - 1)
        cand = np.where(is_sp, self.sp["cand"][t, k, s_seed], self.dl["cand"][t, bc, k, d_seed])
        vis = np.where(is_sp, self.sp["vis"][t, k, s_seed], self.dl["vis"][t, bc, k, d_seed])
        cost = np.where(
            act, np.where(is_sp, self.sp["cost"][t, k, s_seed], self.dl["cost"][t, bc, k, d_seed]), 0.0
        )
        hidden_pass = np.where(is_sp, self.sp["pass"][t, k, s_seed], self.dl["pass"][t, bc, k, d_seed])
        hidden_res = np.where(is_sp, self.sp["res"][t, k, s_seed], self.dl["res"][t, bc, k, d_seed])
        reward = E.step_reward(self.lam, cost)
        # bookkeeping for the envs that ran an agent
        a_rows = np.flatnonzero(act)
        a_k, a_sp = k[a_rows], is_sp[a_rows]
        self.spawns[a_rows[a_sp], a_k[a_sp]] += 1
        d_rows = a_rows[~a_sp]
        self.delegs[d_rows, bc[d_rows], a_k[~a_sp]] += 1
        self.deleg_total[d_rows, a_k[~a_sp]] += 1
        self.last_vis[a_rows, a_k] = vis[a_rows]
        self.last_cost[a_rows, a_k] = cost[a_rows]
        self.cost += cost
        self.step_no += act
        better = act & E.improves(cand >= 0, vis, self.best_vis)
        self.best = np.where(better, cand, self.best)
        self.best_vis = np.where(better, vis, self.best_vis)
        self.best_pass = np.where(better, hidden_pass, self.best_pass)
        self.best_res = np.where(better, hidden_res, self.best_res)
        if self.with_tokens and a_rows.size:
            entries = np.where(
                a_sp[:, None],
                self.sp_hist[t[a_rows], a_k, s_seed[a_rows]],
                self.dl_hist[t[a_rows], bc[a_rows], a_k, d_seed[a_rows]],
            )
            sub = self.tokens[a_rows]
            F.push_history(sub, entries, self.slots)
            self.tokens[a_rows] = sub
        truncated = act & ~E.within_limits(self.step_no, self.cost, rules)
        done = halt | truncated
        score = E.score(self.best_pass, self.best_res, rules.reward)
        reward = reward + np.where(E.submits(halt, truncated, rules), score, 0.0)
        self.ret += reward
        final = {
            "done": done,
            "task": t.copy(),
            "pass_rate": np.where(done, self.best_pass, 0.0),
            "resolved": done & self.best_res,
            "cost": np.where(done, self.cost, 0.0),
            "steps": np.where(done, self.step_no, 0),
            "ret": np.where(done, self.ret, 0.0),
        }
        if final_obs and done.any():
            final["obs"] = self.observe()  # before the reset below; only the done rows are read
        self.reset_envs(np.flatnonzero(done))
        return self.observe(), reward, halt, truncated, final


# per job: in the store, candidate index (-1: no change), visible pass-rate, cost, hidden pass-rate, resolved
_JOB_FIELDS = (
    ("ok", bool),
    ("cand", np.int64),
    ("vis", np.float64),
    ("cost", np.float64),
    ("pass", np.float64),
    ("res", bool),
)
