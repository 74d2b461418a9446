"""Configs: YAML + key.sub=value overrides; unknown keys and wrong types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm_spawn.envs.config import ConfigError, StrictModel, build_config, load_config


class Inner(StrictModel):
    lr: float = 1e-3
    layers: int = 2


class Outer(StrictModel):
    name: str = "run"
    inner: Inner = Inner()
    tags: list[str] = []


def test_overrides_set_nested_values_with_yaml_types(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: base\ninner:\n  lr: 0.1\n")
    cfg = load_config(Outer, path, ["inner.layers=4", "tags=[a, b]", "name=x"])
    assert (cfg.name, cfg.inner.lr, cfg.inner.layers, cfg.tags) == ("x", 0.1, 4, ["a", "b"])


def test_unknown_key_in_override_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.lrr'"):
        build_config(Outer, {}, ["inner.lrr=0.1"])


def test_unknown_key_in_file_is_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nmae: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'nmae'"):
        load_config(Outer, path)


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"key 'inner\.layers'.*'many'"):
        build_config(Outer, {}, ["inner.layers=many"])


def test_malformed_override_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="not of the form"):
        build_config(Outer, {}, ["inner.layers"])
    with pytest.raises(ConfigError, match="config not found: no/such"):
        load_config(Outer, "no/such")


def test_override_through_a_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'name' is a value"):
        build_config(Outer, {"name": "x"}, ["name.sub=1"])


def test_every_shipped_yaml_is_valid_yaml() -> None:
    from hrm_spawn.envs.config import CONFIG_DIR, read_yaml

    files = sorted(CONFIG_DIR.rglob("*.yaml"))
    assert files, "configs/ has no presets"
    for path in files:
        assert isinstance(read_yaml(path), dict)
