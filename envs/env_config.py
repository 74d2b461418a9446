"""The built-in env's config (``EnvConfig``) and where its tasks come from.

Everything that needs the episode rules or the task set of a config (SpawnEnv, the batched replay,
``hrm-spawn collect``, the trainers and eval) reads them from here, without building an env.
A split (``split``, ``heldout_fraction``, ``folds``/``fold``) applies to every task source: a task file
(``load_env_tasks``) and a list given in memory (``split_env_tasks``) alike.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hrm_spawn.envs.agent_slots import BudgetOverrides
from hrm_spawn.envs.config import ConfigError, StrictModel, build_config, load_config
from hrm_spawn.envs.sandbox import SandboxConfig
from hrm_spawn.envs.tasks import TaskInstance, load_tasks

DEFAULT_AGENTS = ["op-flip", "swap", "const", "cond", "broad"]


class EnvConfig(StrictModel):
    """The built-in env's settings: SpawnEnv's keyword arguments, ``TrainConfig.env``, ``env/*.yaml``."""

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
    # Per cost unit (the store's): fixed, or [lo, hi] sampled uniformly per episode.
    lam: float | tuple[float, float] = 0.01
    max_steps: int = Field(8, ge=1)
    # What a run costs (λ and max_cost count it): None = the store's unit (OutcomeStore.cost_unit). Runs
    # collected here can also be costed in "test_executions", the test-suite executions they made: a
    # count, so the same config gives the same costs (and the same trained policy) on a busy or an idle
    # machine, where "test_runs" (sandbox seconds per full test run) follows the load.
    cost_unit: Literal["test_runs", "test_executions", "usd", "tokens"] | None = None
    # In the cost unit: full test runs (or test executions) for runs collected here, USD or tokens for an
    # imported table (set it to match: 50 tokens ends every episode after one run).
    max_cost: float = Field(50.0, gt=0)
    reward: Literal["pass_rate", "resolved"] = "pass_rate"
    # What the policy sees of a run (its visible pass-rate; envs.replay.OBSERVE): the run's own test run
    # ("agent"; a run imported from a table reports nothing), nothing ("none"), or a verifier's verdict,
    # the hidden resolved flag ("verifier"). Reports state it.
    observe: Literal["agent", "none", "verifier"] = "agent"
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
    """The tasks of ``config.tasks``, split as the config says."""
    if not config.tasks:
        raise ConfigError("env config: 'tasks' is not set (a task file, e.g. tasks=path/to/tasks.jsonl)")
    loaded = load_tasks(config.tasks)
    if loaded.problems:
        warnings.warn(
            f"{config.tasks}: {len(loaded.problems)} invalid task records skipped "
            f"(first: {loaded.problems[0]})",
            stacklevel=2,
        )
    return split_env_tasks(config, loaded.tasks, str(config.tasks))


def split_env_tasks(config: EnvConfig, tasks: Sequence[TaskInstance], source: str) -> list[TaskInstance]:
    """The config's split of ``tasks``, wherever they came from (a file or a list in memory)."""
    from hrm_spawn.envs.split import select_split

    try:
        chosen = select_split(
            tasks, config.split, config.heldout_fraction, config.split_seed, config.folds, config.fold
        )
    except ValueError as exc:  # e.g. labelled tasks with folds
        raise ConfigError(f"env config: {source}: {exc}") from None
    if not chosen:
        raise ConfigError(f"env config: no tasks in {source} for split {config.split!r}")
    return chosen
