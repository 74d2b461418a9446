"""Rollout, apart from learning: actors, episodes and episode sources, shared by ACT Q, PPO and eval.

* **Env**: ``make_env(config)`` builds the env the ``TrainConfig`` names (``env_id``: registered,
  entry point or ``module:Class``) with its settings; ``replay_of(env)`` gives its outcome tables when
  it can replay them (SpawnEnv and subclasses in any mode), which unlocks the batched fast path.
* **Actors** map a batch of observations and the rows whose episode starts now to actions:
  ``act(obs, reset_rows) -> int array``. ``PolicyActor`` drives a SpawnPolicy (ε-greedy on its Q-head,
  the recurrent carry kept per row); the baselines (trainers/baselines.py) are actors too.
* **Episodes**: ``run_batched_episodes`` (one episode per row of a ``BatchedReplayEnv``) and
  ``run_gym_episodes`` (one per gymnasium env) record ``Episode``s, with the hidden halt value h_t of
  each state for the trainers' targets (never part of the observation).
* **Sources**: ``BatchedSource``/``GymSource`` hand a trainer one batch of complete episodes per call;
  ``make_source(config, num_envs)`` picks the batched one when the env can replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hrm_spawn.envs import episode as E
from hrm_spawn.envs.config import ConfigError
from hrm_spawn.policies.spawn_policy import HALT, SpawnPolicy, greedy_action

if TYPE_CHECKING:
    import gymnasium as gym

    from hrm_spawn.envs.replay import Replay
    from hrm_spawn.trainers.config import TrainConfig


@dataclass
class Episode:
    """One finished episode, as numpy arrays (T = steps taken)."""

    tokens: np.ndarray  # [T, L] int64
    features: np.ndarray  # [T, F] float32
    masks: np.ndarray  # [T, A] bool
    actions: np.ndarray  # [T] int64
    costs: np.ndarray  # [T] float32, cost of each step (0 for halt)
    halt_values: np.ndarray  # [T + 1] float32, h_t; h_T is the value submitted at the end
    lam: float
    instance_id: str = ""
    pass_rate: float = 0.0  # hidden pass-rate submitted
    resolved: bool = False
    truncated: bool = False

    @property
    def steps(self) -> int:
        return len(self.actions)

    @property
    def total_cost(self) -> float:
        return float(self.costs.sum())


# ---------------------------------------------------------------------------------------------------
# Actors.

Actor = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def choose_actions(
    q_logits: torch.Tensor, masks: torch.Tensor, epsilon: float, rng: np.random.Generator
) -> np.ndarray:
    """ε-greedy over valid actions: greedy on the Q-head, uniformly random valid action with prob ε."""
    actions = greedy_action(q_logits, masks).cpu().numpy()
    masks_np = masks.cpu().numpy().astype(bool)
    explore = rng.random(len(actions)) < epsilon
    for row in np.flatnonzero(explore):
        actions[row] = rng.choice(np.flatnonzero(masks_np[row]))
    return actions


class PolicyActor:
    """Drives a SpawnPolicy over a batch of envs: carry per row, reset at each row's episode start."""

    def __init__(
        self,
        policy: SpawnPolicy,
        device: torch.device,
        epsilon: float = 0.0,
        rng: np.random.Generator | None = None,
    ):
        self.policy, self.device, self.epsilon = policy, device, epsilon
        self.rng = rng or np.random.default_rng(0)
        self.carry = None
        self.q_values: list[np.ndarray] = []

    @torch.no_grad()
    def __call__(self, obs: dict[str, np.ndarray], reset_rows: np.ndarray) -> np.ndarray:
        tokens = torch.as_tensor(obs["tokens"], dtype=torch.long, device=self.device)
        features = torch.as_tensor(obs["features"], dtype=torch.float32, device=self.device)
        masks = torch.as_tensor(np.asarray(obs["action_mask"]).astype(bool), device=self.device)
        if self.carry is None or self.carry.z_H.shape[0] != len(tokens):
            self.carry = self.policy.initial_carry(len(tokens), self.device)
        reset = torch.as_tensor(np.asarray(reset_rows, bool), device=self.device)
        self.carry, out = self.policy(self.carry, tokens, features, masks, reset)
        self.q_values.append(torch.sigmoid(out.q_logits).cpu().numpy())
        return choose_actions(out.q_logits, masks, self.epsilon, self.rng)


class _EpisodeLog:
    """Per-row lists filled while episodes run, turned into ``Episode`` objects at the end."""

    def __init__(self, n: int):
        self.rows: list[dict[str, list]] = [
            {"tokens": [], "features": [], "masks": [], "actions": [], "costs": [], "h": []} for _ in range(n)
        ]

    def record(self, row: int, obs: dict[str, np.ndarray], action: int) -> None:
        log = self.rows[row]
        if "tokens" in obs:  # baselines run without tokens (faster); they never read them
            log["tokens"].append(obs["tokens"][row])
        log["features"].append(obs["features"][row])
        log["masks"].append(np.asarray(obs["action_mask"][row]).astype(bool))
        log["actions"].append(action)

    def episode(
        self, row: int, lam: float, instance_id: str, pass_rate: float, resolved: bool, truncated: bool
    ) -> Episode:
        log = self.rows[row]
        return Episode(
            tokens=np.stack(log["tokens"]).astype(np.int64)
            if log["tokens"]
            else np.zeros((len(log["actions"]), 0), np.int64),
            features=np.stack(log["features"]).astype(np.float32),
            masks=np.stack(log["masks"]),
            actions=np.asarray(log["actions"], dtype=np.int64),
            costs=np.asarray(log["costs"], dtype=np.float32),
            halt_values=np.asarray(log["h"], dtype=np.float32),
            lam=float(lam),
            instance_id=instance_id,
            pass_rate=float(pass_rate),
            resolved=bool(resolved),
            truncated=bool(truncated),
        )


def run_batched_episodes(env: Any, act: Actor, tasks: np.ndarray, lams: np.ndarray) -> list[Episode]:
    """One episode per row of a ``BatchedReplayEnv`` (row i: task index ``tasks[i]``, cost weight ``lams[i]``).

    The env auto-resets a finished row; until every row is done such rows get action 0 (halt, always
    valid, free) and what they do is ignored. h_t is read from the env's candidate tables: the score
    of the candidate a halt would submit now.
    """
    n = len(tasks)
    if n != env.num_envs:
        raise ValueError(f"run_batched_episodes: {n} tasks for an env of {env.num_envs} rows")
    env.reset_envs(np.arange(n), task=np.asarray(tasks), lam=np.asarray(lams, dtype=float))
    obs = env.observe()
    log = _EpisodeLog(n)
    done = np.zeros(n, bool)
    out: list[Episode | None] = [None] * n
    reset_rows = np.ones(n, bool)
    while not done.all():
        h_now = _batched_halt_value(env)
        for row in np.flatnonzero(~done & reset_rows):
            log.rows[row]["h"].append(float(h_now[row]))
        actions = np.where(done, 0, act(obs, reset_rows))
        reset_rows = np.zeros(n, bool)
        cost_before = env.cost.copy()
        for row in np.flatnonzero(~done):
            log.record(row, obs, int(actions[row]))
        obs, _, _, truncated, final = env.step(actions)
        h_next = _batched_halt_value(env)
        for row in np.flatnonzero(~done):
            ended = bool(final["done"][row])
            spent = (final["cost"][row] if ended else env.cost[row]) - cost_before[row]
            log.rows[row]["costs"].append(float(spent))
            if ended:
                score = E.score(final["pass_rate"][row], final["resolved"][row], env.spec.reward)
                h_end = (
                    log.rows[row]["h"][-1]
                    if actions[row] == HALT
                    else (float(score) if E.submits(False, True, env.spec) else 0.0)
                )
                log.rows[row]["h"].append(h_end)
                out[row] = log.episode(
                    row,
                    lams[row],
                    env.task_ids[tasks[row]],
                    final["pass_rate"][row],
                    final["resolved"][row],
                    bool(truncated[row]),
                )
                done[row] = True
            else:
                log.rows[row]["h"].append(float(h_next[row]))
    return [e for e in out if e is not None]


def _batched_halt_value(env: Any) -> np.ndarray:
    """Hidden score a halt would get now, per row (0 where no candidate yet)."""
    return np.asarray(env.halt_value(), float)


def gym_halt_value(env: Any, info: dict[str, Any]) -> float:
    """Hidden score of the candidate a halt would submit now (0 without one), from ``info["best_score"]``.

    SpawnEnv puts it there (a custom env should too, else halting is valued at 0). The trainer may read
    hidden figures; the policy never sees them.
    """
    return float(info.get("best_score", 0.0))


def run_gym_episodes(
    envs: Sequence[Any],
    act: Actor,
    seeds: Sequence[int],
    options: Sequence[dict | None] | None = None,
    before_step: Callable[[list[tuple[Any, int]]], None] | None = None,
) -> list[Episode]:
    """One episode in each gymnasium env (SpawnEnv in any mode, or a custom env with the same contract).

    Step costs come from ``info["cost"]`` (cumulative cost units), λ from ``info["lam"]`` (else feature 0).
    ``before_step`` sees each step's (env, action) pairs of the unfinished episodes before any steps (a
    backend runs the agent runs they need there, all at once: ``BackendJobs.before_step``).
    """
    n = len(envs)
    obs_rows, infos = [], []
    for env, seed, opt in zip(envs, seeds, options or [None] * n, strict=True):
        o, i = env.reset(seed=int(seed), options=opt)
        obs_rows.append(o)
        infos.append(i)
    log = _EpisodeLog(n)
    for row in range(n):
        log.rows[row]["h"].append(gym_halt_value(envs[row], infos[row]))
    lams = [float(i.get("lam", o["features"][0])) for i, o in zip(infos, obs_rows, strict=True)]
    spent = [float(i.get("cost", 0.0)) for i in infos]
    done = np.zeros(n, bool)
    out: list[Episode | None] = [None] * n
    reset_rows = np.ones(n, bool)
    while not done.all():
        obs = {k: np.stack([o[k] for o in obs_rows]) for k in obs_rows[0]}
        actions = act(obs, reset_rows)
        reset_rows = np.zeros(n, bool)
        if before_step is not None:
            before_step([(envs[row], int(actions[row])) for row in np.flatnonzero(~done)])
        for row in np.flatnonzero(~done):
            a = int(actions[row])
            log.record(row, obs, a)
            o, _, term, trunc, info = envs[row].step(a)
            cost_now = float(info.get("cost", spent[row]))
            log.rows[row]["costs"].append(cost_now - spent[row])
            spent[row] = cost_now
            log.rows[row]["h"].append(
                log.rows[row]["h"][-1] if a == HALT else gym_halt_value(envs[row], info)
            )
            obs_rows[row] = o
            if term or trunc:
                done[row] = True
                out[row] = log.episode(
                    row,
                    lams[row],
                    str(info.get("instance_id", "")),
                    float(info.get("pass_rate", 0.0) or 0.0),
                    bool(info.get("resolved", False)),
                    bool(trunc and not term),
                )
    return [e for e in out if e is not None]


# ---------------------------------------------------------------------------------------------------
# Sources.


class BatchedSource:
    """Training episodes from a ``BatchedReplayEnv``: tasks drawn from ``task_indices``, λ from the env's rules."""

    def __init__(self, env: Any, task_indices: Sequence[int]):
        if len(task_indices) == 0:
            raise ValueError("BatchedSource: no training tasks")
        self.env, self.task_indices = env, np.asarray(task_indices, np.int64)

    def __call__(self, act: Actor, rng: np.random.Generator) -> list[Episode]:
        n = self.env.num_envs
        tasks = rng.choice(self.task_indices, size=n)
        lams = E.sample_lam(self.env.spec.lam, rng, n)
        return run_batched_episodes(self.env, act, tasks, lams)

    def close(self) -> None:
        pass


class GymSource:
    """Training episodes from gymnasium envs (any mode); the env samples the task and λ from the seed.

    With ``jobs`` (a ``BackendJobs``; the envs are its ``FillEnv``s) the episodes step in lockstep and
    each step's agent runs go to the collect backend as one frontier; in live mode each batch of
    episodes runs its runs afresh (a run two episodes of one batch need runs once).
    """

    def __init__(self, envs: Sequence[Any], jobs: Any = None):
        self.envs, self.jobs = list(envs), jobs

    def __call__(self, act: Actor, rng: np.random.Generator) -> list[Episode]:
        seeds = rng.integers(0, 2**31 - 1, size=len(self.envs))
        if self.jobs is None:
            return run_gym_episodes(self.envs, act, seeds)
        self.jobs.forget()
        return run_gym_episodes(self.envs, act, seeds, before_step=self.jobs.before_step)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        if self.jobs is not None:
            self.jobs.close()


# ---------------------------------------------------------------------------------------------------
# The env the config names.


def make_env(config: TrainConfig, **overrides: Any) -> gym.Env:
    """One env: ``env_id``'s constructor called with the given ``env`` settings, ``env_args`` and ``overrides``.

    A split asked for must be applied: an env whose config ends up with another split says it cannot.
    """
    import hrm_spawn.envs  # noqa: F401  (registers the built-in env id)
    from hrm_spawn.envs.registry import make

    settings = {**config.env_settings(), **overrides}
    try:
        env = make(config.env_id, **settings)
    except TypeError as exc:
        raise ConfigError(
            f"env {config.env_id!r}: its constructor refused the settings {sorted(settings)}: {exc}"
        ) from exc
    wanted = settings.get("split", "all")
    got = getattr(getattr(env.unwrapped, "config", None), "split", "all")
    if wanted != "all" and got != wanted:
        env.close()
        raise ConfigError(
            f"env {config.env_id!r} cannot split its tasks (asked for split={wanted!r}, it has {got!r}); "
            "build it on SpawnEnv, or give it tasks already split and leave env.split unset"
        )
    return env


def env_factory(config: TrainConfig, **overrides: Any) -> Callable[[], gym.Env]:
    """A no-argument constructor of ``make_env(config, **overrides)`` (vector envs take these)."""
    return lambda: make_env(config, **overrides)


def replay_of(env: Any) -> Replay | None:
    """The env's tasks, outcome tables and rules when it can replay them (``env.replay()``), else None."""
    replay = getattr(env.unwrapped, "replay", None)
    return replay() if callable(replay) else None


def make_source(config: TrainConfig, num_envs: int) -> tuple[Any, gym.Env]:
    """(episode source, an env whose spaces size the policy).

    An env that can replay in replay mode trains on a ``BatchedReplayEnv`` (numpy, many episodes per
    step); SpawnEnv in live or cached mode on ``num_envs`` ``FillEnv``s whose runs go to collect's backend
    (``config.backend``: local workers, one per env by default, or Ray; ``backend_source``); any other runs ``num_envs`` gymnasium envs side by
    side, each running its own agents.
    """
    from hrm_spawn.envs.registry import SPAWN_ENV_ID
    from hrm_spawn.envs.replay import BatchedReplayEnv

    if config.env_id == SPAWN_ENV_ID and not config.env_args and config.env.mode != "replay":
        b = config.backend
        return backend_source(config, num_envs, b.kind, b.workers, b.address)
    first = make_env(config)
    replay = (
        replay_of(first)
        if getattr(getattr(first.unwrapped, "config", None), "mode", None) == "replay"
        else None
    )
    if replay is not None:
        batched = BatchedReplayEnv.from_replay(replay, num_envs=num_envs, seed=config.seed)
        return BatchedSource(batched, range(len(replay.tasks))), first
    envs = [first] + [make_env(config) for _ in range(num_envs - 1)]
    return GymSource(envs), first


def episode_scalars(episodes: Sequence[Episode]) -> dict[str, float]:
    """Mean return, resolve rate, pass-rate, cost and steps of finished episodes (for the logs)."""
    n = max(1, len(episodes))
    return {
        "episode/return": sum(e.pass_rate - e.lam * e.total_cost for e in episodes) / n,
        "episode/resolve_rate": sum(e.resolved for e in episodes) / n,
        "episode/pass_rate": sum(e.pass_rate for e in episodes) / n,
        "episode/cost": sum(e.total_cost for e in episodes) / n,
        "episode/steps": sum(e.steps for e in episodes) / n,
    }


def backend_source(
    config: TrainConfig,
    num_envs: int,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> tuple[GymSource, gym.Env]:
    """Live/cached SpawnEnv training on a collect backend: ``num_envs`` ``FillEnv``s in lockstep, each
    step's runs as one frontier on ``workers`` (default ``num_envs``) workers of ``backend``."""
    from hrm_spawn.envs.agent_slots import resolve_agents
    from hrm_spawn.envs.store import OutcomeStore
    from hrm_spawn.trainers.backend_env import BackendJobs, FillEnv

    env_cfg = config.env
    store = OutcomeStore(env_cfg.store_path())
    slots = resolve_agents(env_cfg.agents, env_cfg.budget)
    jobs = BackendJobs(
        env_cfg.mode,
        store,
        slots,
        env_cfg.sandbox,
        backend,
        workers or num_envs,
        address,
        progress=False,
    )
    envs = [FillEnv(env_cfg, jobs) for _ in range(num_envs)]
    return GymSource(envs, jobs), envs[0]
