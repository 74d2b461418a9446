"""Check a ``hrm-spawn train`` invocation completely before anything is written.

``run_training`` creates the run directory and writes its config before the env validates its section,
so a typo (``env.taks=x``) used to leave a half-made run behind. Here the whole config is validated
first, every bad key is traced to where it was typed (the command line or the config file), and the
message suggests the spelling that works. No torch import: this runs before the trainer loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hrm_spawn.envs.config import ConfigError, format_validation_error, load_config, resolve_config_path
from hrm_spawn.envs.suggest import config_keys, unknown_key_hint
from hrm_spawn.trainers.config import TrainConfig

TRAIN_EXAMPLE = "hrm-spawn train trainers/act_q env.tasks=tinydb.jsonl env.store=outcomes.sqlite"


def _builtin_env(env_id: str) -> bool:
    from hrm_spawn.envs.registry import SPAWN_ENV_ID

    return env_id == SPAWN_ENV_ID


def valid_train_keys(builtin_env: bool) -> list[str]:
    """TrainConfig's dotted keys, plus ``env.<key>`` for every EnvConfig key when the env is built in."""
    keys = config_keys(TrainConfig)
    if builtin_env:
        from hrm_spawn.envs.spawn_env import EnvConfig

        keys += ["env." + k for k in config_keys(EnvConfig)] + ["env.preset"]
    return keys


def _check_override_keys(overrides: list[str], builtin_env: bool) -> None:
    valid = set(valid_train_keys(builtin_env))
    problems = []
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if "=" not in override or key in valid or not builtin_env and key.startswith("env."):
            continue  # malformed overrides get apply_override's own message
        if any(key.startswith(v + ".") for v in valid if _is_open_section(v)):
            continue
        hint = unknown_key_hint(TrainConfig, key.split("."), extra=[k for k in valid if k.startswith("env.")])
        problems.append(f"command line {override!r}: unknown key '{key}'{hint}")
    if problems:
        raise ConfigError("\n".join(problems))


def _is_open_section(key: str) -> bool:
    """Sections whose keys are free-form (agent kwargs, budgets per agent): not checked key by key."""
    return key.endswith(("kwargs", "budgets", "agent_kwargs", "env_args"))


def check_train(config_name: str, overrides: list[str]) -> TrainConfig:
    """The validated TrainConfig, or a ConfigError naming each bad key and where it came from."""
    source = str(resolve_config_path(config_name))
    env_id = load_config(TrainConfig, config_name, [o for o in overrides if o.startswith("env_id=")]).env_id
    builtin = _builtin_env(env_id)
    _check_override_keys(overrides, builtin)
    config = load_config(TrainConfig, config_name, overrides)
    if builtin:
        _check_env(config.env, source, [o for o in overrides if o.startswith("env.")])
    return config


def _check_env(env: Any, source: str, env_overrides: list[str]) -> None:
    """``env_overrides``: the ``env.*`` overrides as typed (they name the command line in errors)."""
    from hrm_spawn.envs.spawn_env import EnvConfig

    try:
        env_cfg = env if isinstance(env, EnvConfig) else EnvConfig.model_validate(env)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, source, EnvConfig, env_overrides, prefix="env.")
        ) from None
    if not env_cfg.tasks:
        raise ConfigError(
            f"env.tasks is not set (in {source} nor on the command line): add env.tasks=PATH/TO/tasks.jsonl, "
            f"e.g. {TRAIN_EXAMPLE}"
        )
    tasks = Path(str(env_cfg.tasks)).expanduser()
    if not tasks.exists():
        where = "command line" if any(o.startswith("env.tasks=") for o in env_overrides) else source
        raise ConfigError(f"{where}: env.tasks: {tasks} does not exist (build one: hrm-spawn tasks build)")
    _check_agents(env_cfg.agents, _where("env.agents", source, env_overrides))
    store = env_cfg.store_path()
    if env_cfg.mode == "replay" and not store.is_file():
        raise ConfigError(
            f"{_where('env.store', source, env_overrides)}: env.store: {store} does not exist; replay reads "
            "outcomes from it (fill it with hrm-spawn collect, or hrm-spawn store import)"
        )


def _where(key: str, source: str, env_overrides: list[str]) -> str:
    typed = next((o for o in reversed(env_overrides) if o.split("=", 1)[0].strip() == key), None)  # last wins
    return f"command line {typed!r}" if typed else source


def _check_agents(names: list[str], where: str) -> None:
    """Every agent name is known (``name@version`` needs no agent code: replay reads it from the store),
    so a typo does not leave a run directory behind."""
    from hrm_spawn.envs.agents.registry import get_spec

    for name in names:
        if "@" in name:
            continue
        try:
            get_spec(name)
        except LookupError as exc:
            raise ConfigError(f"{where}: env.agents: {exc}") from None
