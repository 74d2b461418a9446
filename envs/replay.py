"""Replay from the outcome store: per-task outcome tables and a batched numpy env.

``TaskTable`` is one task's outcomes, keyed by (agent index, seed, start-patch sha), reduced to what an
episode needs (candidate sha, visible pass-rate, cost in units, hidden score). SpawnEnv's replay mode,
the oracle and ``BatchedReplayEnv`` all read it, so they share one set of numbers.

``BatchedReplayEnv`` steps N episodes at once with array operations over padded tables; it follows
SpawnEnv's replay semantics exactly (masks, rewards, features, tokens; missing outcomes are masked) and
auto-resets finished episodes in the same step, returning their final figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hrm_spawn.envs import features as F
from hrm_spawn.envs.store import CLEAN, Outcome, OutcomeStore, patch_sha

if TYPE_CHECKING:
    from hrm_spawn.envs.collect import AgentSlot
    from hrm_spawn.envs.tasks import TaskInstance


def cost_unit_s(task: TaskInstance) -> float:
    """Seconds per cost unit: one full test run of the task (1 s when the task does not say)."""
    return float(task.test_run_s) if task.test_run_s else 1.0


@dataclass(frozen=True)
class JobOutcome:
    """One agent run as an episode sees it."""

    sha: str | None  # the candidate's patch sha; None when the run returned no change
    patch: str
    visible: float  # the agent's own pass-rate estimate (observable)
    cost: float  # sandbox seconds / cost_unit_s
    pass_rate: float  # hidden
    resolved: bool  # hidden
    status: str

    def score(self, reward: str) -> float:
        return float(self.resolved) if reward == "resolved" else self.pass_rate


def job_outcome(outcome: Outcome, unit_s: float) -> JobOutcome:
    result, evaluation = outcome.result, outcome.evaluation
    return JobOutcome(
        sha=patch_sha(result.patch) if result.patch else None,
        patch=result.patch,
        visible=float(result.visible_pass_rate),
        cost=float(result.cost.sandbox_s) / unit_s,
        pass_rate=float(evaluation.pass_rate),
        resolved=bool(evaluation.resolved),
        status=result.status,
    )


@dataclass
class TaskTable:
    instance_id: str
    unit_s: float
    outcomes: dict[tuple[int, int, str], JobOutcome] = field(default_factory=dict)  # (agent, seed, start sha)

    def candidates(self) -> list[str]:
        """Distinct candidate shas, in a fixed order."""
        return sorted({j.sha for j in self.outcomes.values() if j.sha})


def build_task_table(task: TaskInstance, store: OutcomeStore, slots: Sequence[AgentSlot]) -> TaskTable:
    index = {(s.name, s.version): k for k, s in enumerate(slots)}
    table = TaskTable(task.instance_id, cost_unit_s(task))
    for key, outcome in store.iter_task(task.instance_id):
        k = index.get((key.agent, key.agent_version))
        if k is not None:
            table.outcomes[(k, key.seed, key.start_patch_sha)] = job_outcome(outcome, table.unit_s)
    return table


@dataclass
class ReplaySpec:
    """Episode rules shared with SpawnEnv (the fields of EnvConfig that replay needs)."""

    agents: list[str]
    seeds_per_agent: int = 2
    delegate_seeds: int = 1
    max_steps: int = 8
    max_cost: float = 50.0
    reward: str = "pass_rate"
    lam: float | tuple[float, float] = 0.01
    seq_len: int = 512
    submit_on_truncate: bool = True
    task_text: bool = True
    task_features: bool = True
    cost_bin: float = 0.0

    @classmethod
    def from_config(cls, config) -> ReplaySpec:  # EnvConfig; not imported to keep the modules apart
        lam = config.lam if isinstance(config.lam, float) else tuple(config.lam)
        return cls(
            [a.partition("@")[0] for a in config.agents],
            config.seeds_per_agent,
            config.delegate_seeds,
            config.max_steps,
            config.max_cost,
            config.reward,
            lam,
            config.seq_len,
            config.submit_on_truncate,
            config.task_text,
            config.task_features,
            config.cost_bin,
        )


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
        self.num_actions = 1 + 2 * self.K
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
        self.best_vis = np.full(n, -1.0)
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
    def _sample_lam(self, count: int) -> np.ndarray:
        lam = self.spec.lam
        if isinstance(lam, tuple):
            return self.rng.uniform(lam[0], lam[1], count)
        return np.full(count, float(lam))

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
        self.best_vis[idx] = -1.0
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
        n, K, S, D = self.num_envs, self.K, self.S, self.D
        mask = np.zeros((n, self.num_actions), bool)
        mask[:, 0] = True
        budget_ok = (self.cost < self.spec.max_cost) & (self.step_no < self.spec.max_steps)
        t = self.t[:, None]
        ks = np.arange(K)[None, :]
        seeds = np.minimum(self.spawns, S - 1)
        mask[:, 1 : K + 1] = (self.spawns < S) & self.sp["ok"][t, ks, seeds] & budget_ok[:, None]
        has = (self.best >= 0) & (self.best_vis < 1.0)
        bc = np.maximum(self.best, 0)[:, None]
        d = self.delegs[self._rows[:, None], bc, ks]
        ok = self.dl["ok"][t, bc, ks, np.minimum(d, D - 1)] & (d < D)
        mask[:, K + 1 :] = ok & (has & budget_ok)[:, None]
        return mask

    def halt_value(self) -> np.ndarray:
        """Hidden score a halt would submit now, per row (0 without a candidate); for trainers' targets."""
        score = self.best_res.astype(float) if self.spec.reward == "resolved" else self.best_pass
        return np.where(self.best >= 0, score, 0.0)

    def features(self) -> np.ndarray:
        sp = self.spec
        has = self.best >= 0
        spent = F.cost_share(self.cost, sp.max_cost, sp.cost_bin)
        cols = [
            self.lam,
            self.step_no / sp.max_steps,
            spent,
            np.maximum(0.0, 1.0 - spent),
            np.where(has, np.maximum(self.best_vis, 0.0), 0.0),
            has.astype(float),
            self.lam * sp.max_cost,
        ]
        glob = np.stack(cols, axis=1)
        per = np.stack(
            [
                self.spawns / self.S,
                self.deleg_total / sp.max_steps,
                self.last_vis,
                F.cost_share(self.last_cost, sp.max_cost, sp.cost_bin),
            ],
            axis=2,
        ).reshape(self.num_envs, -1)
        return np.concatenate([glob, self.task_feats[self.t], per], axis=1).astype(np.float32)

    def observe(self) -> dict[str, np.ndarray]:
        obs = {"features": self.features(), "action_mask": self.action_masks().astype(np.int8)}
        if self.with_tokens:
            obs["tokens"] = self.tokens.copy()
        return obs

    def step(self, actions: np.ndarray):
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
        K, rows, t = self.K, self._rows, self.t
        halt = actions == 0
        is_sp = (actions >= 1) & (actions <= K)
        act = ~halt
        k = np.where(is_sp, actions - 1, actions - 1 - K).clip(0, K - 1)
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
        reward = -self.lam * cost
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
        better = act & (cand >= 0) & ((self.best < 0) | (vis > self.best_vis))
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
        truncated = act & ((self.step_no >= self.spec.max_steps) | (self.cost >= self.spec.max_cost))
        done = halt | truncated
        score = self.best_res.astype(float) if self.spec.reward == "resolved" else self.best_pass
        pays = halt | (truncated & self.spec.submit_on_truncate)
        reward = reward + np.where(pays, score, 0.0)
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
