"""The config machinery, re-exported from ``hrm_spawn.core.config`` (its home) for existing imports."""

from hrm_spawn.core.config import (
    CONFIG_DIR,
    ConfigError,
    StrictModel,
    apply_override,
    build_config,
    dump_config,
    load_config,
    preset_dir,
    read_yaml,
    resolve_config_path,
)

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "StrictModel",
    "apply_override",
    "build_config",
    "dump_config",
    "load_config",
    "preset_dir",
    "read_yaml",
    "resolve_config_path",
]
