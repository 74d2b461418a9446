"""SpawnEnv: one episode = one task; the policy halts, spawns agent k, or delegates the best candidate to k.

The rules of an episode (action ids, masks, the best-candidate update, reward and submission, the
global features) are envs/episode.py's; this module adds where outcomes come from: the outcome store
alone (``replay``), the store with a sandbox run on a miss (``cached``), or always a sandbox run
(``live``). In replay mode (``mask_missing``) any job whose outcome is not in the store is masked too.

Cost unit: the outcome store's (``OutcomeStore.cost_unit``) unless ``env.cost_unit`` chooses another the
runs record: for runs collected here, ``test_runs`` (sandbox seconds of the agent run ÷ the task's
``test_run_s``, one full test run; 1 s when the task does not say: measured, so it follows the machine's
load) or ``test_executions`` (the test-suite executions the run made, counted: the same on any machine);
for a table imported from another harness, its USD or tokens. ``max_cost`` and λ are in that unit. What the policy sees of a run (its visible pass-rate) is ``observe``'s: the run's own
test run (``agent``), nothing (``none``), or a verifier's verdict, the hidden resolved flag
(``verifier``), the switch for imported tables, whose runs report nothing themselves. ``terminated`` on halt; ``truncated`` at the step or cost limit or on a sandbox
failure, with ``info["truncated_reason"]``.

Built from an ``EnvConfig``, a dict or YAML path of one, or flat keyword arguments (what
``gymnasium.make(id, **kwargs)`` passes): ``SpawnEnv(tasks="tasks.jsonl", mode="replay", lam=0.02)``.
``tasks`` is a path (a string is always a path) or a list of ``TaskInstance``; a list is split as the
config says, like a file.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hrm_spawn.envs import episode as E
from hrm_spawn.envs import features as F
from hrm_spawn.envs.agent_slots import AgentSlot, job_key, resolve_agents
from hrm_spawn.envs.config import build_config
from hrm_spawn.envs.env_config import (  # noqa: F401  (EnvConfig & co. re-exported: their old home)
    DEFAULT_AGENTS,
    EnvConfig,
    load_env_config,
    load_env_tasks,
    split_env_tasks,
)
from hrm_spawn.envs.episode import JobOutcome
from hrm_spawn.envs.jobs import run_job
from hrm_spawn.envs.replay import (
    Replay,
    TaskTable,
    build_task_table,
    check_tables,
    cost_unit_s,
    env_cost_unit,
    job_outcome,
)
from hrm_spawn.envs.store import CLEAN, OutcomeStore
from hrm_spawn.envs.tasks import TaskInstance

ENV_ID = "HRMSpawn/SWESmith-v0"


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


def env_config_from_arguments(
    config: EnvConfig | dict | str | Path | None, overrides: list[str] | None, settings: dict[str, Any]
) -> EnvConfig:
    """The config, with flat keyword ``settings`` (EnvConfig fields) on top; errors name the argument."""
    base = load_env_config(config, overrides)
    if not settings:
        return base
    unknown = sorted(set(settings) - set(EnvConfig.model_fields))
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, list(EnvConfig.model_fields), n=1) for u in unknown]
        said = ", ".join(
            f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
            for u, h in zip(unknown, hints, strict=True)
        )
        raise TypeError(
            f"SpawnEnv: unknown keyword argument {said}; it takes config=, overrides=, tasks=, store=, "
            f"slots=, render_mode= and the EnvConfig fields: {', '.join(EnvConfig.model_fields)}"
        )
    return build_config(EnvConfig, {**base.model_dump(), **settings}, source="SpawnEnv keyword arguments")


def _task_list(value: Sequence[Any]) -> list[TaskInstance]:
    out = []
    for i, item in enumerate(value):
        if isinstance(item, TaskInstance):
            out.append(item)
        elif isinstance(item, dict):
            out.append(TaskInstance.model_validate(item))
        else:
            raise TypeError(
                f"SpawnEnv: tasks[{i}] is a {type(item).__name__}, not a TaskInstance "
                "(tasks= takes a path to a task file or a list of TaskInstance)"
            )
    return out


class SpawnEnv(gym.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        config: EnvConfig | dict | str | Path | None = None,
        overrides: list[str] | None = None,
        *,
        tasks: str | Path | Sequence[TaskInstance] | None = None,
        store: OutcomeStore | str | Path | None = None,
        slots: list[AgentSlot] | None = None,
        render_mode: str | None = None,
        **settings: Any,
    ):
        """Build from a config (and/or flat EnvConfig fields); tasks/store/slots in memory skip loading."""
        if isinstance(tasks, (str, Path)):  # a path, never a sequence of characters
            settings["tasks"] = str(tasks)
            tasks = None
        elif tasks is not None and not isinstance(tasks, Sequence):
            raise TypeError(
                f"SpawnEnv: tasks= takes a path or a list of TaskInstance, not {type(tasks).__name__}"
            )
        if isinstance(store, (str, Path)) and "store" not in settings:
            settings["store"] = str(store)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"SpawnEnv: render_mode {render_mode!r} is not one of {self.metadata['render_modes']}"
            )
        self.config = cfg = env_config_from_arguments(config, overrides, settings)
        self.rules = E.EpisodeRules(cfg)
        self.render_mode = render_mode
        if tasks is not None:
            self.tasks = split_env_tasks(cfg, _task_list(tasks), "the tasks given in memory")
        else:
            self.tasks = load_env_tasks(cfg)
        if not self.tasks:
            raise ValueError("SpawnEnv: no tasks")
        self.store = store if isinstance(store, OutcomeStore) else self._open_store(cfg)
        self.slots = slots or resolve_agents(cfg.agents, cfg.budget, build=cfg.mode != "replay")
        self.K = len(self.slots)
        self.layout = E.ActionLayout(self.K)
        self.agent_names = [s.name for s in self.slots]
        self._tables: dict[str, TaskTable] = {}
        if cfg.mode == "replay":
            self._load_tables()
        self.n_actions = self.layout.n
        self.action_space = MaskedDiscrete(self.n_actions, self.action_masks)
        self.observation_space = E.observation_space(self.layout, cfg.seq_len)
        self._slots_hist = F.history_slots(cfg.seq_len, cfg.max_steps)
        self._static: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # instance id -> tokens, task features
        self._sandbox = None
        self.task: TaskInstance | None = None

    @staticmethod
    def _open_store(cfg: EnvConfig) -> OutcomeStore:
        path = cfg.store_path()
        if cfg.mode == "replay" and not Path(path).is_file():
            raise FileNotFoundError(
                f"SpawnEnv replay: outcome store {path} does not exist (run hrm-spawn collect)"
            )
        return OutcomeStore(path)

    # -- tables ------------------------------------------------------------------------------------
    def _load_tables(self) -> None:
        for task in self.tasks:
            self._tables[task.instance_id] = build_task_table(
                task, self.store, self.slots, self.config.observe, self.config.cost_unit
            )
        check_tables(list(self._tables.values()), self.store, self.slots)

    def task_table(self, instance_id: str) -> TaskTable:
        """The per-task outcome table (built from the store on first use) for fast replay."""
        if instance_id not in self._tables:
            task = next((t for t in self.tasks if t.instance_id == instance_id), None)
            if task is None:
                raise KeyError(f"SpawnEnv: no task {instance_id!r}")
            self._tables[instance_id] = build_task_table(
                task, self.store, self.slots, self.config.observe, self.config.cost_unit
            )
        return self._tables[instance_id]

    def tables(self) -> list[TaskTable]:
        return [self.task_table(t.instance_id) for t in self.tasks]

    @property
    def cost_unit(self) -> str:
        """What this env's costs, ``max_cost`` and λ count: ``env.cost_unit`` or its store's unit (``test_runs``,
        ``test_executions``, ``usd``, ``tokens``)."""
        return env_cost_unit(self.store, self.config.cost_unit)

    def replay(self) -> Replay:
        """This env's tasks, their outcome tables from its store, and its rules (for batched replay,
        the baselines and the oracle); in cached/live mode, what the store holds so far."""
        return Replay(list(self.tasks), self.tables(), self.rules)

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
        self.spawns = np.zeros(self.K, np.int64)
        self.delegs: dict[tuple[int, str], int] = {}
        self.deleg_total = np.zeros(self.K, np.int64)
        self.last_vis = np.zeros(self.K)
        self.last_cost = np.zeros(self.K)
        self.best: JobOutcome | None = None
        self.history: list[tuple[str, int, JobOutcome]] = []
        tokens, self.task_feats = self._static_obs(self.task)
        self.tokens = tokens.copy()
        return self._obs(), self._info()

    def _static_obs(self, task: TaskInstance) -> tuple[np.ndarray, np.ndarray]:
        if task.instance_id not in self._static:
            cfg = self.config
            self._static[task.instance_id] = (
                F.task_tokens(task, cfg.seq_len, cfg.max_steps, cfg.task_text),
                F.task_features(task, cfg.task_features),
            )
        return self._static[task.instance_id]

    @property
    def best_visible(self) -> float:
        return self.best.visible if self.best else E.NO_CANDIDATE

    def _delegations(self) -> np.ndarray:
        """Per agent: how often the current best candidate went to it."""
        sha = self.best.sha if self.best else None
        return np.asarray([self.delegs.get((k, sha), 0) for k in range(self.K)], np.int64)

    def _job(self, action: int) -> tuple[int, int, str, str]:
        """(agent index, seed, start sha, start patch) of a spawn/delegate action."""
        kind, k = self.layout.decode(action)
        if kind == "spawn":
            return k, int(self.spawns[k]), CLEAN, ""
        assert self.best is not None and self.best.sha is not None
        return k, self.delegs.get((k, self.best.sha), 0), self.best.sha, self.best.patch

    def action_masks(self) -> np.ndarray:
        if self.task is None:
            return np.eye(1, self.n_actions, dtype=bool)[0]  # halt only
        rules = self.rules
        mask = E.action_mask(
            self.layout,
            E.within_limits(self.step_no, self.cost, rules),
            E.spawn_open(self.spawns, rules),
            E.delegate_open(self._delegations(), rules),
            self.best_visible,
        )
        if self.config.mode == "replay" and self.config.mask_missing:
            table = self.task_table(self.task.instance_id)
            for a in np.flatnonzero(mask[1:]) + 1:
                k, seed, sha, _ = self._job(int(a))
                mask[a] = (k, seed, sha) in table.outcomes
        return mask

    def action_name(self, action: int) -> str:
        return self.layout.name(action, self.agent_names)

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
        if action == E.HALT:
            return self._finish(0.0, terminated=True, reason=None)
        k, seed, sha, patch = self._job(action)
        try:
            job = self._outcome(k, seed, sha, patch)
        except ReplayMissError:
            raise
        except Exception as exc:  # a sandbox or agent failure ends the episode; the policy is not to blame
            return self._finish(0.0, terminated=False, reason=f"sandbox_failure: {type(exc).__name__}: {exc}")
        delegated = sha != CLEAN
        if delegated:
            self.delegs[(k, sha)] = seed + 1
            self.deleg_total[k] += 1
        else:
            self.spawns[k] += 1
        self.last_vis[k], self.last_cost[k] = job.visible, job.cost
        self.cost += job.cost
        self.step_no += 1
        if E.improves(job.sha is not None and job.sha != "", job.visible, self.best_visible):
            self.best = job
        self.history.append((self.action_name(action), seed, job))
        cfg = self.config
        entry = F.history_entry(
            delegated, self.agent_names[k], job.visible, job.cost, job.status, cfg.max_cost, cfg.cost_bin
        )
        F.push_history(self.tokens, entry, self._slots_hist)
        reward = E.step_reward(self.lam, job.cost)
        reason = E.truncation_reason(self.step_no, self.cost, self.rules)
        if reason:
            return self._finish(reward, terminated=False, reason=reason)
        self.ret += reward
        return self._obs(), reward, False, False, self._info()

    def _finish(self, reward: float, terminated: bool, reason: str | None):
        submitted = self.best
        if E.submits(terminated, not terminated, self.rules):
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
        return job_outcome(outcome, self.unit_s, self.cost_unit, cfg.observe)

    def _sandbox_get(self):
        if self._sandbox is None:  # one per process, made on first need (replay never gets here)
            from hrm_spawn.envs.sandbox import Sandbox

            self._sandbox = Sandbox(self.config.sandbox)
        return self._sandbox

    # -- observation -------------------------------------------------------------------------------
    def _features(self) -> np.ndarray:
        return E.observation_features(
            self.lam,
            self.step_no,
            self.cost,
            self.best_visible,
            self.task_feats,
            self.spawns,
            self.deleg_total,
            self.last_vis,
            self.last_cost,
            self.rules,
        )

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
