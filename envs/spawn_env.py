"""SpawnEnv: one episode = one task; the policy halts, spawns agent k, or delegates the best candidate to k.

Actions ``Discrete(1 + 2K)``: 0 halt, 1..K spawn agent k-1 on the clean buggy repository (seed = how
often k-1 was spawned this episode), K+1..2K delegate the best candidate to agent k-1 (seed = how often
that candidate went to k-1). Masked: spawn once an agent used its ``seeds_per_agent``; delegate without
a candidate, when the best candidate already looks solved (visible pass-rate 1) or after
``delegate_seeds`` delegations of it to that agent; every spawn/delegate once the step or cost limit is
reached; in replay mode (``mask_missing``) any job whose outcome is not in the store.

Cost unit: sandbox seconds of the agent run ÷ the task's ``test_run_s`` (one full test run; 1 s when
the task does not say). Reward: −λ·cost for each spawn/delegate; on halt + the hidden score (pass-rate
= f2p fraction × p2p fraction, or resolved 0/1) of the best candidate by *visible* pass-rate (0 without
one). ``terminated`` on halt; ``truncated`` at the step or cost limit or on a sandbox failure, with
``info["truncated_reason"]``; a limit submits the best candidate as a halt would (``submit_on_truncate``).
"""

from __future__ import annotations

import math
import warnings
import weakref
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field, field_validator, model_validator

from hrm_spawn.envs import features as F
from hrm_spawn.envs.collect import AgentSlot, BudgetOverrides, job_key, resolve_agents, run_job
from hrm_spawn.envs.config import ConfigError, StrictModel, build_config, load_config
from hrm_spawn.envs.replay import JobOutcome, TaskTable, build_task_table, cost_unit_s, job_outcome
from hrm_spawn.envs.sandbox import SandboxConfig
from hrm_spawn.envs.store import CLEAN, OutcomeStore
from hrm_spawn.envs.tasks import TaskInstance, load_tasks
from hrm_spawn.policies.tokenizer import VOCAB_SIZE

ENV_ID = "HRMSpawn/SWESmith-v0"
DEFAULT_AGENTS = ["op-flip", "swap", "const", "cond", "broad"]


class EnvConfig(StrictModel):
    tasks: str | None = None  # task file (JSON, JSONL, parquet, datasets dir)
    split: Literal["all", "train", "heldout"] = "all"
    heldout_fraction: float = Field(0.25, ge=0.0, le=1.0)
    split_seed: int = 0
    # Cross-fitting: with folds = K >= 2 the held-out side is fold `fold` of K (heldout_fraction unused).
    folds: int = Field(0, ge=0)
    fold: int = Field(0, ge=0)
    agents: list[str] = Field(default_factory=lambda: list(DEFAULT_AGENTS))  # "name" or "name@version"
    seeds_per_agent: int = Field(2, ge=1)
    delegate_seeds: int = Field(1, ge=1)
    collect_depth: int = Field(1, ge=0)  # delegation rounds `hrm-spawn collect` explores
    budget: BudgetOverrides = Field(default_factory=BudgetOverrides)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    store: str | None = None  # default: <data dir>/stores/outcomes.sqlite
    mode: Literal["live", "cached", "replay"] = "cached"
    lam: float | tuple[float, float] = 0.01  # fixed, or [lo, hi] sampled uniformly per episode
    max_steps: int = Field(8, ge=1)
    max_cost: float = Field(50.0, gt=0)  # cost units (full test runs)
    reward: Literal["pass_rate", "resolved"] = "pass_rate"
    seq_len: int = Field(512, ge=64)
    mask_missing: bool = True  # replay: mask jobs the store lacks (False: stepping one is an error)
    submit_on_truncate: bool = True
    # False: the tokens carry the agents' returns only, not the task's text. With a few dozen training
    # tasks the text identifies each task, and a policy that memorises per-task choices does not carry
    # over to new tasks; without it the policy must learn a strategy from λ and what the agents report.
    task_text: bool = True
    # The task's failure profile (envs.features.TASK_FEATURES): coarse, so it carries over to new tasks.
    task_features: bool = True
    # > 0: costs in the observation rounded to multiples of cost_bin * max_cost (envs/features.py says why).
    cost_bin: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("lam")
    @classmethod
    def _check_lam(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        lo, hi = (value, value) if isinstance(value, float) else value
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi < lo:
            raise ValueError(f"lam must be a number >= 0 or [lo, hi] with 0 <= lo <= hi, got {value}")
        return value

    @model_validator(mode="after")
    def _check_fold(self) -> EnvConfig:
        if self.folds == 1:
            raise ValueError("folds must be 0 (one split by heldout_fraction) or >= 2")
        if self.folds >= 2 and self.fold >= self.folds:
            raise ValueError(f"fold must be in [0, folds={self.folds}), got {self.fold}")
        return self

    @field_validator("max_cost")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("max_cost must be finite (it normalises the cost features)")
        return value

    def store_path(self) -> Path:
        if self.store:
            return Path(self.store).expanduser()
        from hrm_spawn.envs.paths import stores_dir

        return stores_dir() / "outcomes.sqlite"


def load_env_config(
    config: EnvConfig | dict | str | Path | None = None, overrides: list[str] | None = None
) -> EnvConfig:
    if isinstance(config, EnvConfig):
        return build_config(EnvConfig, config.model_dump(), overrides) if overrides else config
    if config is None:
        return build_config(EnvConfig, {}, overrides, source="env config")
    if isinstance(config, dict):
        return build_config(EnvConfig, config, overrides, source="env config")
    return load_config(EnvConfig, config, overrides)


def load_env_tasks(config: EnvConfig) -> list[TaskInstance]:
    from hrm_spawn.envs.split import select_split

    if not config.tasks:
        raise ConfigError("env config: 'tasks' is not set (a task file, e.g. tasks=path/to/tasks.jsonl)")
    loaded = load_tasks(config.tasks)
    if loaded.problems:
        warnings.warn(
            f"{config.tasks}: {len(loaded.problems)} invalid task records skipped "
            f"(first: {loaded.problems[0]})",
            stacklevel=2,
        )
    try:
        tasks = select_split(
            loaded.tasks, config.split, config.heldout_fraction, config.split_seed, config.folds, config.fold
        )
    except ValueError as exc:  # e.g. labelled tasks with folds
        raise ConfigError(f"env config: {config.tasks}: {exc}") from None
    if not tasks:
        raise ConfigError(f"env config: no tasks in {config.tasks} for split {config.split!r}")
    return tasks


class MaskedDiscrete(spaces.Discrete):
    """Discrete whose ``sample()`` draws from the actions allowed now.

    Generic tools (gymnasium's and SB3's checkers, random baselines) step ``action_space.sample()``;
    with masking that must give a legal action. The env is held by a weak reference and dropped when
    the space is pickled (a copy in another process samples uniformly, like a plain Discrete).
    """

    def __init__(self, n: int, mask_fn=None, seed: int | None = None):
        super().__init__(n, seed=seed)
        self._mask_ref = weakref.WeakMethod(mask_fn) if mask_fn is not None else None

    def sample(self, mask: np.ndarray | None = None, probability: np.ndarray | None = None) -> np.int64:
        fn = self._mask_ref() if self._mask_ref is not None else None
        if mask is None and probability is None and fn is not None:
            mask = np.asarray(fn(), dtype=np.int8)
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mask_ref"] = None
        return state


class MaskedActionError(ValueError):
    """The action is masked in the current state."""


class ReplayMissError(LookupError):
    """Replay mode stepped a job whose outcome is not in the store; the message names the key."""


class SpawnEnv(gym.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        config: EnvConfig | dict | str | Path | None = None,
        overrides: list[str] | None = None,
        *,
        tasks: list[TaskInstance] | None = None,
        store: OutcomeStore | str | Path | None = None,
        slots: list[AgentSlot] | None = None,
        render_mode: str | None = None,
    ):
        """Build from a config; ``tasks``/``store``/``slots`` given in memory skip loading them (fast)."""
        self.config = cfg = load_env_config(config, overrides)
        self.render_mode = render_mode
        self.tasks = list(tasks) if tasks is not None else load_env_tasks(cfg)
        if not self.tasks:
            raise ValueError("SpawnEnv: no tasks")
        if store is None:
            store = cfg.store_path()
        if isinstance(store, OutcomeStore):
            self.store = store
        else:
            if cfg.mode == "replay" and not Path(store).is_file():
                raise FileNotFoundError(
                    f"SpawnEnv replay: outcome store {store} does not exist (run hrm-spawn collect)"
                )
            self.store = OutcomeStore(store)
        self.slots = slots or resolve_agents(cfg.agents, cfg.budget, build=cfg.mode != "replay")
        self.K = len(self.slots)
        self.agent_names = [s.name for s in self.slots]
        self._tables: dict[str, TaskTable] = {}
        if cfg.mode == "replay":
            self._load_tables()
        self.n_actions = 1 + 2 * self.K
        self.action_space = MaskedDiscrete(self.n_actions, self.action_masks)
        self.observation_space = spaces.Dict(
            {
                "tokens": spaces.Box(0, VOCAB_SIZE - 1, (cfg.seq_len,), np.int64),
                "features": spaces.Box(-np.inf, np.inf, (F.num_features(self.K),), np.float32),
                "action_mask": spaces.MultiBinary(self.n_actions),
            }
        )
        self._slots_hist = F.history_slots(cfg.seq_len, cfg.max_steps)
        self._static: dict[str, tuple[np.ndarray, list[float]]] = {}  # instance id -> tokens, task features
        self._sandbox = None
        self.task: TaskInstance | None = None

    # -- tables ------------------------------------------------------------------------------------
    def _load_tables(self) -> None:
        for task in self.tasks:
            self._tables[task.instance_id] = build_task_table(task, self.store, self.slots)
        empty = [t for t, tb in self._tables.items() if not tb.outcomes]
        if len(empty) == len(self.tasks):
            stored = sorted({f"{k.agent}@{k.agent_version}" for k in self.store.keys()})[:10]  # noqa: SIM118 (a store, not a dict)
            raise ValueError(
                f"SpawnEnv replay: the store {self.store.path} has no outcomes for these tasks and "
                f"agents {[f'{s.name}@{s.version}' for s in self.slots]} (run hrm-spawn collect); "
                f"it holds {stored or 'nothing'}: a collect with a budget override records "
                "'name@version+budget.<hash>', so pass the same budget.* overrides here"
            )

    def task_table(self, instance_id: str) -> TaskTable:
        """The per-task outcome table (built from the store on first use) for fast replay."""
        if instance_id not in self._tables:
            task = next((t for t in self.tasks if t.instance_id == instance_id), None)
            if task is None:
                raise KeyError(f"SpawnEnv: no task {instance_id!r}")
            self._tables[instance_id] = build_task_table(task, self.store, self.slots)
        return self._tables[instance_id]

    def tables(self) -> list[TaskTable]:
        return [self.task_table(t.instance_id) for t in self.tasks]

    # -- episode -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "instance_id" in options:
            ids = [t.instance_id for t in self.tasks]
            if options["instance_id"] not in ids:
                raise KeyError(f"SpawnEnv.reset: no task {options['instance_id']!r} in this env")
            self.task = self.tasks[ids.index(options["instance_id"])]
        elif "task_index" in options:
            self.task = self.tasks[int(options["task_index"])]
        else:
            self.task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        lam = self.config.lam
        if "lam" in options:
            self.lam = float(options["lam"])
        elif isinstance(lam, tuple):
            self.lam = float(self.np_random.uniform(lam[0], lam[1]))
        else:
            self.lam = float(lam)
        self.unit_s = cost_unit_s(self.task)
        self.step_no, self.cost, self.ret = 0, 0.0, 0.0
        self.spawns = [0] * self.K
        self.delegs: dict[tuple[int, str], int] = {}
        self.deleg_total = [0] * self.K
        self.last_vis = [0.0] * self.K
        self.last_cost = [0.0] * self.K
        self.best: JobOutcome | None = None
        self.history: list[tuple[str, int, JobOutcome]] = []
        tokens, self.task_feats = self._static_obs(self.task)
        self.tokens = tokens.copy()
        return self._obs(), self._info()

    def _static_obs(self, task: TaskInstance) -> tuple[np.ndarray, list[float]]:
        if task.instance_id not in self._static:
            cfg = self.config
            self._static[task.instance_id] = (
                F.task_tokens(task, cfg.seq_len, cfg.max_steps, cfg.task_text),
                F.task_features(task, cfg.task_features).tolist(),
            )
        return self._static[task.instance_id]

    def _job(self, action: int) -> tuple[int, int, str, str]:
        """(agent index, seed, start sha, start patch) of a spawn/delegate action."""
        if action <= self.K:
            k = action - 1
            return k, self.spawns[k], CLEAN, ""
        k = action - 1 - self.K
        assert self.best is not None and self.best.sha is not None
        return k, self.delegs.get((k, self.best.sha), 0), self.best.sha, self.best.patch

    def action_masks(self) -> np.ndarray:
        cfg, K = self.config, self.K
        mask = np.zeros(self.n_actions, dtype=bool)
        mask[0] = True
        if self.task is None or self.step_no >= cfg.max_steps or self.cost >= cfg.max_cost:
            return mask
        table = self._tables.get(self.task.instance_id) if cfg.mode == "replay" and cfg.mask_missing else None
        can_delegate = self.best is not None and self.best.visible < 1.0
        for k in range(K):
            mask[1 + k] = self.spawns[k] < cfg.seeds_per_agent
            if can_delegate:
                mask[1 + K + k] = self.delegs.get((k, self.best.sha), 0) < cfg.delegate_seeds
        if table is not None:
            for a in np.flatnonzero(mask[1:]) + 1:
                k, seed, sha, _ = self._job(int(a))
                mask[a] = (k, seed, sha) in table.outcomes
        return mask

    def action_name(self, action: int) -> str:
        if action == 0:
            return "halt"
        if action <= self.K:
            return f"spawn {self.agent_names[action - 1]}"
        return f"delegate {self.agent_names[action - 1 - self.K]}"

    def step(self, action):
        if self.task is None:
            raise RuntimeError("SpawnEnv.step called before reset()")
        try:
            action = int(action)
        except (TypeError, ValueError):
            raise ValueError(f"SpawnEnv.step: action {action!r} is not an integer") from None
        if not 0 <= action < self.n_actions:
            raise ValueError(f"SpawnEnv.step: action {action} is not in Discrete({self.n_actions})")
        mask = self.action_masks()
        if not mask[action]:
            raise MaskedActionError(
                f"SpawnEnv.step: action {action} ({self.action_name(action)}) is masked on task "
                f"{self.task.instance_id} at step {self.step_no}; allowed: "
                f"{[self.action_name(int(a)) for a in np.flatnonzero(mask)]}"
            )
        if action == 0:
            return self._finish(0.0, terminated=True, reason=None)
        k, seed, sha, patch = self._job(action)
        try:
            job = self._outcome(k, seed, sha, patch)
        except ReplayMissError:
            raise
        except Exception as exc:  # a sandbox or agent failure ends the episode; the policy is not to blame
            return self._finish(0.0, terminated=False, reason=f"sandbox_failure: {type(exc).__name__}: {exc}")
        if action <= self.K:
            self.spawns[k] += 1
        else:
            self.delegs[(k, sha)] = seed + 1
            self.deleg_total[k] += 1
        self.last_vis[k], self.last_cost[k] = job.visible, job.cost
        self.cost += job.cost
        self.step_no += 1
        if job.sha and (self.best is None or job.visible > self.best.visible):
            self.best = job
        self.history.append((self.action_name(action), seed, job))
        cfg = self.config
        F.push_history(
            self.tokens,
            F.history_entry(
                action > self.K,
                self.agent_names[k],
                job.visible,
                job.cost,
                job.status,
                cfg.max_cost,
                cfg.cost_bin,
            ),
            self._slots_hist,
        )
        reward = -self.lam * job.cost
        if self.step_no >= self.config.max_steps:
            return self._finish(reward, terminated=False, reason="max_steps")
        if self.cost >= self.config.max_cost:
            return self._finish(reward, terminated=False, reason="max_cost")
        self.ret += reward
        return self._obs(), reward, False, False, self._info()

    def _finish(self, reward: float, terminated: bool, reason: str | None):
        submitted = self.best
        if terminated or self.config.submit_on_truncate:
            reward += submitted.score(self.config.reward) if submitted else 0.0
        self.ret += reward
        info = self._info()
        info.update(
            pass_rate=submitted.pass_rate if submitted else 0.0,
            resolved=bool(submitted.resolved) if submitted else False,
            episode_return=self.ret,
            steps=self.step_no,
        )
        if reason:
            info["truncated_reason"] = reason
        obs = self._obs()
        return obs, reward, terminated, not terminated, info

    def _outcome(self, k: int, seed: int, sha: str, patch: str) -> JobOutcome:
        cfg, task, slot = self.config, self.task, self.slots[k]
        key = job_key(task.instance_id, slot, seed, patch)
        if cfg.mode == "replay":
            job = self.task_table(task.instance_id).outcomes.get((k, seed, sha))
            if job is None:
                raise ReplayMissError(
                    f"SpawnEnv replay: no outcome for {key} in store {self.store.path} "
                    "(collect it with hrm-spawn collect, or use mode=cached)"
                )
            return job
        if cfg.mode == "cached":
            outcome = self.store.get_or_run(
                key, lambda: run_job(self._sandbox_get(), task, slot, seed, patch, self.store)
            )
        else:
            outcome = run_job(self._sandbox_get(), task, slot, seed, patch)
            self.store.put(key, outcome)
        return job_outcome(outcome, self.unit_s)

    def _sandbox_get(self):
        if self._sandbox is None:  # one per process, made on first need (replay never gets here)
            from hrm_spawn.envs.sandbox import Sandbox

            self._sandbox = Sandbox(self.config.sandbox)
        return self._sandbox

    # -- observation -------------------------------------------------------------------------------
    def _features(self) -> np.ndarray:
        cfg = self.config
        row = F.global_features(
            self.lam,
            self.step_no,
            cfg.max_steps,
            self.cost,
            cfg.max_cost,
            self.best.visible if self.best else None,
            cfg.cost_bin,
        )
        row += self.task_feats
        for k in range(self.K):
            row += [
                self.spawns[k] / cfg.seeds_per_agent,
                self.deleg_total[k] / cfg.max_steps,
                self.last_vis[k],
                float(F.cost_share(self.last_cost[k], cfg.max_cost, cfg.cost_bin)),
            ]
        return np.asarray(row, dtype=np.float64).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "tokens": self.tokens.copy(),
            "features": self._features(),
            "action_mask": self.action_masks().astype(np.int8),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "action_mask": self.action_masks(),
            "instance_id": self.task.instance_id if self.task else None,
            "lam": self.lam,
            "step": self.step_no,
            "cost": self.cost,
            "candidate": self.best.sha if self.best else None,
            "best_visible": self.best.visible if self.best else 0.0,
            # hidden: what a halt would earn now; for trainers' targets, never part of the observation
            "best_score": self.best.score(self.config.reward) if self.best else 0.0,
        }

    def render(self) -> str | None:
        if self.task is None:
            return None
        lines = [f"task {self.task.instance_id} λ={self.lam:.4g} step {self.step_no} cost {self.cost:.2f}"]
        lines += [
            f"  {name} seed {seed}: visible {j.visible:.2f} cost {j.cost:.2f} {j.status}"
            for name, seed, j in self.history
        ]
        return "\n".join(lines)

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
