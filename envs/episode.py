"""The rules of one episode, written once: SpawnEnv, the batched replay, the oracle and the tree read them.

* **Actions** (``ActionLayout``): ``Discrete(1 + 2K)``; 0 halt, ``1 + k`` spawn agent k on the clean
  buggy repository, ``1 + K + k`` delegate the best candidate to agent k.
* **Masks** (``action_mask``): halt always; spawn k while it has seeds left; delegate k while there is a
  best candidate that does not look solved (visible pass-rate < 1) and k has delegate seeds left for it;
  no spawn or delegate once the step or cost limit is reached (``within_limits``).
* **State update** (``improves``): a run with a candidate becomes the best candidate when its *visible*
  pass-rate beats the best so far (strictly: the earlier run wins a tie).
* **Reward**: ``-λ·cost`` for each run (``step_reward``); the episode ends on halt (terminated) or at a
  limit (truncated); on halt, and at a limit with ``submit_on_truncate``, the best candidate is
  submitted and its hidden score is added (``submits``, ``score``).
* **Global features** (``global_features``, ``agent_features``, ``observation_features``): the numbers
  the policy sees besides the tokens (layout names in envs/features.py).

Every rule is one expression over numbers that works on Python scalars and on numpy arrays alike, so the
single-episode env and the vectorised one use the same code. "No candidate" is a best visible pass-rate
of ``NO_CANDIDATE`` (-1), below any real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from hrm_spawn.envs.features import cost_share, num_features
from hrm_spawn.envs.tokenizer import VOCAB_SIZE

HALT = 0
NO_CANDIDATE = -1.0  # best visible pass-rate before any candidate

ActionKind = Literal["halt", "spawn", "delegate"]


@dataclass(frozen=True)
class ActionLayout:
    """Action ids of K agents: ``encode``/``decode``/``name`` one id, ``agent_of``/``is_spawn`` arrays."""

    num_agents: int

    @property
    def n(self) -> int:
        return 1 + 2 * self.num_agents

    def spawn(self, k: int) -> int:
        return 1 + k

    def delegate(self, k: int) -> int:
        return 1 + self.num_agents + k

    def encode(self, kind: ActionKind, k: int = 0) -> int:
        if kind == "halt":
            return HALT
        if not 0 <= k < self.num_agents:
            raise ValueError(f"agent index {k} is not in [0, {self.num_agents})")
        return self.spawn(k) if kind == "spawn" else self.delegate(k)

    def decode(self, action: int) -> tuple[ActionKind, int]:
        """``(kind, agent index)``; the index is -1 for halt."""
        action = int(action)
        if not 0 <= action < self.n:
            raise ValueError(f"action {action} is not in Discrete({self.n})")
        if action == HALT:
            return "halt", -1
        if action <= self.num_agents:
            return "spawn", action - 1
        return "delegate", action - 1 - self.num_agents

    def name(self, action: int, agents: Sequence[str]) -> str:
        kind, k = self.decode(action)
        return "halt" if kind == "halt" else f"{kind} {agents[k]}"

    def spawns(self) -> slice:
        """The spawn ids as a slice of a mask row."""
        return slice(1, 1 + self.num_agents)

    def delegates(self) -> slice:
        return slice(1 + self.num_agents, self.n)

    def is_spawn(self, actions):
        return (actions >= 1) & (actions <= self.num_agents)

    def agent_of(self, actions: np.ndarray) -> np.ndarray:
        """The agent index of each action (halt rows get 0; mask them with ``actions != HALT``)."""
        k = np.where(self.is_spawn(actions), actions - 1, actions - 1 - self.num_agents)
        return np.clip(k, 0, self.num_agents - 1)


def observation_space(layout: ActionLayout, seq_len: int) -> spaces.Dict:
    """``Dict(tokens, features, action_mask)``: what every spawn env shows its policy."""
    return spaces.Dict(
        {
            "tokens": spaces.Box(0, VOCAB_SIZE - 1, (seq_len,), np.int64),
            "features": spaces.Box(-np.inf, np.inf, (num_features(layout.num_agents),), np.float32),
            "action_mask": spaces.MultiBinary(layout.n),
        }
    )


@dataclass(frozen=True)
class JobOutcome:
    """One agent run as an episode sees it."""

    sha: str | None  # the candidate's patch sha; None when the run returned no change
    patch: str
    visible: float  # the agent's own pass-rate estimate (observable)
    cost: float  # sandbox seconds / cost unit (one full test run of the task)
    pass_rate: float  # hidden
    resolved: bool  # hidden
    status: str

    def score(self, reward: str) -> float:
        return float(score(self.pass_rate, self.resolved, reward))


@dataclass(frozen=True, eq=False)  # the config is not hashable; rules compare by identity
class EpisodeRules:
    """The episode rules of an env config (``EnvConfig``): a view of it, not a copy.

    ``agents`` are the names without versions; every other field (``max_steps``, ``max_cost``,
    ``seeds_per_agent``, ``delegate_seeds``, ``reward``, ``lam``, ``seq_len``, ``submit_on_truncate``,
    ``cost_bin``, ...) reads through to the config.
    """

    config: Any  # envs.env_config.EnvConfig (not imported: this module sits below it)

    @classmethod
    def from_config(cls, config: Any) -> EpisodeRules:
        return cls(config)

    @cached_property
    def agents(self) -> list[str]:
        return [a.partition("@")[0] for a in self.config.agents]

    @cached_property
    def layout(self) -> ActionLayout:
        return ActionLayout(len(self.config.agents))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("config", "agents", "layout"):
            raise AttributeError(name)
        return getattr(self.config, name)


def lam_range(lam) -> tuple[float, float]:
    """λ of an env config as ``(low, high)``: a number is a range of one."""
    return (float(lam[0]), float(lam[1])) if isinstance(lam, (tuple, list)) else (float(lam), float(lam))


def sample_lam(lam, rng: np.random.Generator, count: int) -> np.ndarray:
    """λ for ``count`` new episodes: uniform over the range, or the fixed value (no draw)."""
    if isinstance(lam, (tuple, list)):
        return rng.uniform(lam[0], lam[1], count)
    return np.full(count, float(lam))


# -- the rules, on scalars or arrays -----------------------------------------------------------------


def within_limits(step, cost, rules: EpisodeRules):
    """True while another run is allowed: below the step limit and below the cost limit."""
    return (step < rules.max_steps) & (cost < rules.max_cost)


def truncation_reason(step, cost, rules: EpisodeRules) -> str | None:
    """Which limit ended the episode after a run (``None`` while within both)."""
    if step >= rules.max_steps:
        return "max_steps"
    if cost >= rules.max_cost:
        return "max_cost"
    return None


def can_delegate(best_visible):
    """A best candidate exists and does not look solved yet."""
    return (best_visible > NO_CANDIDATE) & (best_visible < 1.0)


def spawn_open(spawns, rules: EpisodeRules):
    """Per agent: seeds left to spawn it (``spawns`` [..., K], runs so far)."""
    return spawns < rules.seeds_per_agent


def delegate_open(delegations, rules: EpisodeRules):
    """Per agent: delegate seeds left for the current best candidate (``delegations`` [..., K])."""
    return delegations < rules.delegate_seeds


def action_mask(layout: ActionLayout, within, spawn_ok, delegate_ok, best_visible) -> np.ndarray:
    """The legal actions: [..., 1 + 2K] bool from per-agent ``spawn_ok``/``delegate_ok`` [..., K].

    ``spawn_ok``/``delegate_ok`` already hold the seed rules (and, in replay, whether the job's outcome
    is known); this adds halt, the limits and the delegate precondition.
    """
    spawn_ok, delegate_ok = np.asarray(spawn_ok, bool), np.asarray(delegate_ok, bool)
    within = np.asarray(within, bool)[..., None]
    delegable = np.asarray(can_delegate(np.asarray(best_visible, float)), bool)[..., None]
    mask = np.zeros((*spawn_ok.shape[:-1], layout.n), bool)
    mask[..., HALT] = True
    mask[..., layout.spawns()] = spawn_ok & within
    mask[..., layout.delegates()] = delegate_ok & within & delegable
    return mask


def improves(has_candidate, visible, best_visible):
    """The state update: does this run's candidate replace the best one?"""
    return has_candidate & (visible > best_visible)


def step_reward(lam, cost):
    return -lam * cost


def score(pass_rate, resolved, reward: str):
    """The hidden score of a candidate in the env's reward kind (pass-rate, or resolved 0/1)."""
    return np.asarray(resolved, float) if reward == "resolved" else pass_rate


def submits(terminated, truncated, rules: EpisodeRules):
    """Does the episode's end submit the best candidate? On halt always; at a limit per the config."""
    return terminated | (truncated & rules.submit_on_truncate)


# -- features -----------------------------------------------------------------------------------------


def global_features(lam, step, cost, best_visible, rules: EpisodeRules) -> np.ndarray:
    """``features.GLOBAL_FEATURES`` [..., 7]: λ, step share, cost spent and left, best visible, has one, λ·max_cost."""
    spent = cost_share(cost, rules.max_cost, rules.cost_bin)
    best_visible = np.asarray(best_visible, float)
    has = best_visible > NO_CANDIDATE
    cols = [
        np.asarray(lam, float),
        np.asarray(step, float) / rules.max_steps,
        spent,
        np.maximum(0.0, 1.0 - spent),
        np.where(has, np.maximum(best_visible, 0.0), 0.0),
        has.astype(float),
        np.asarray(lam, float) * rules.max_cost,
    ]
    return np.stack(np.broadcast_arrays(*cols), axis=-1)


def agent_features(spawns, delegations_total, last_visible, last_cost, rules: EpisodeRules) -> np.ndarray:
    """``features.AGENT_FEATURES`` per agent, flattened agent-major: [..., 4K]."""
    per = np.stack(
        [
            np.asarray(spawns, float) / rules.seeds_per_agent,
            np.asarray(delegations_total, float) / rules.max_steps,
            np.asarray(last_visible, float),
            cost_share(last_cost, rules.max_cost, rules.cost_bin),
        ],
        axis=-1,
    )
    return per.reshape(*per.shape[:-2], -1)


def observation_features(
    lam, step, cost, best_visible, task_features, spawns, delegations_total, last_visible, last_cost, rules
) -> np.ndarray:
    """The whole feature row(s) (float32): global, the task's failure profile, per agent."""
    return np.concatenate(
        [
            global_features(lam, step, cost, best_visible, rules),
            np.asarray(task_features, float),
            agent_features(spawns, delegations_total, last_visible, last_cost, rules),
        ],
        axis=-1,
    ).astype(np.float32)
