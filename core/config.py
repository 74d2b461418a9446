"""Typed configs from YAML files plus ``key.sub=value`` overrides.

Every config is a pydantic model with ``extra="forbid"``, so an unknown key or a value of the wrong
type is an error that names the key (``ConfigError``), whether it came from a file or the command line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


def preset_dir() -> Path:
    """The shipped presets: ``configs/`` of a checkout, or the package data of an installed wheel."""
    return Path(str(resources.files("hrm_spawn.configs")))


CONFIG_DIR = preset_dir()

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def resolve_config_path(name: str | Path) -> Path:
    """Accept a path, or a preset name such as ``quickstart`` or ``policy/hrm-tiny`` under configs/."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{name}.yaml", CONFIG_DIR / f"{name}.yml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config not found: {name!s} (looked for a file and for a preset under {CONFIG_DIR})")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``3``, ``true``, ``[1, 2]``)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: value {raw!r} is not valid YAML: {exc}") from exc
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def build_config(
    model: type[M], data: dict[str, Any], overrides: list[str] | None = None, source: str = "config"
) -> M:
    data = dict(data)
    for override in overrides or []:
        apply_override(data, override)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_config(model: type[M], name: str | Path, overrides: list[str] | None = None) -> M:
    """Load a YAML file (or preset name) into ``model``, applying ``key.sub=value`` overrides."""
    path = resolve_config_path(name)
    return build_config(model, read_yaml(path), overrides, source=str(path))


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
