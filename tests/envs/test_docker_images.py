"""The image recipes and their cache keys, checked without Docker and without building anything."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hrm_spawn.envs import images
from hrm_spawn.envs.images import (
    ImageBuildError,
    base_spec,
    cache_key,
    closure_pins,
    docker_name,
    find_repo,
    repo_pins,
    repo_spec,
    rootfs_spec,
)
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.sandbox import DockerOptions, SandboxConfig
from hrm_spawn.trainers.cli import main

# Docker's grammar for one path component of an image name.
COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def test_cache_key_depends_on_content_not_order() -> None:
    a = cache_key({"x": 1, "y": ["a", "b"]})
    assert a == cache_key({"y": ["a", "b"], "x": 1}) and re.fullmatch(r"[0-9a-f]{12}", a)
    assert a != cache_key({"x": 1, "y": ["b", "a"]}) and a != cache_key({"x": 2, "y": ["a", "b"]})


def test_tags_are_stable_and_chain_to_their_parents() -> None:
    rootfs, base = rootfs_spec(), base_spec()
    assert rootfs.tag == rootfs_spec().tag and base.tag == base_spec().tag
    assert base.parent is not None and base.parent.tag == rootfs.tag
    assert base.dockerfile.startswith(f"FROM {rootfs.tag}\n")  # the parent's key is part of the child's
    assert any(p.startswith("swe-rex==") for p in base.pins)


def test_each_input_changes_the_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs, base = rootfs_spec().tag, base_spec().tag
    monkeypatch.setattr(images, "PACKAGES", (*images.PACKAGES, "curl"))
    assert rootfs_spec().tag != rootfs and base_spec().tag != base  # a new rootfs gives a new base
    monkeypatch.undo()
    monkeypatch.setattr(images, "DOCKERFILE_BASE", images.DOCKERFILE_BASE + "RUN true\n")
    assert rootfs_spec().tag == rootfs and base_spec().tag != base
    monkeypatch.undo()
    monkeypatch.setattr(images, "closure_pins", lambda roots: ["swe-rex==0.0.1"])
    assert base_spec().tag != base


def test_testbed_tag_follows_the_repository_commit(fixture_repo: RepoEnv) -> None:
    spec = repo_spec(fixture_repo)
    assert spec.tag.startswith("hrm-spawn/testbed.fixture__calc.0.1:") and spec.parent.kind == "base"
    assert "FROM " + base_spec().tag in spec.dockerfile and "/testbed" in spec.dockerfile
    assert repo_spec(fixture_repo).tag == spec.tag
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=fixture_repo.checkout, check=True)
    assert repo_spec(fixture_repo).tag != spec.tag


def test_repo_pins_come_from_the_repositorys_own_venv(fixture_repo: RepoEnv) -> None:
    # The fixture runs on this interpreter (no venv of its own): pytest and what it needs.
    assert repo_pins(fixture_repo) == closure_pins(["pytest"])
    assert any(p.startswith("pytest==") for p in closure_pins(["pytest"]))
    with pytest.raises(ImageBuildError, match="not installed"):
        closure_pins(["no-such-package-hrm"])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("tinydb__tinydb.4.9.0", "tinydb__tinydb.4.9.0"),
        ("fixture__calc.0.1", "fixture__calc.0.1"),
        ("My_Repo..x___y-", "my_repo-x-y"),
        ("-._", "repo"),
    ],
)
def test_docker_names_follow_dockers_grammar(name: str, expected: str) -> None:
    assert docker_name(name) == expected and COMPONENT_RE.match(docker_name(name))


def test_find_repo_by_prefix_and_a_clear_error(fixture_repo: RepoEnv) -> None:
    assert find_repo("fixture").name == fixture_repo.name
    with pytest.raises(ImageBuildError, match=r"matches no built repository.*fixture__calc"):
        find_repo("tinydb")


def test_cli_check_reports_missing_images_without_building(
    fixture_repo: RepoEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "image_exists", lambda tag: tag.startswith("hrm-spawn/rootfs:"))
    assert main(["images", "build", "--check", "--repo", "fixture"]) == 1
    out = capsys.readouterr().out.split()
    assert out == ["missing", base_spec().tag, "missing", repo_spec(fixture_repo).tag]
    assert main(["images", "build", "--repo", "nothing-here"]) == 2  # a one-line error, no traceback


def test_docker_options_are_validated() -> None:
    config = SandboxConfig(deployment="docker", docker={"pull": "never", "docker_args": ["--memory=2g"]})
    assert config.docker.pull == "never" and config.docker.docker_args == ["--memory=2g"]
    for bad in ({"pull": "sometimes"}, {"docker_args": ["--name=x"]}, {"startup_timeout_s": 0}, {"extra": 1}):
        with pytest.raises(ValueError):
            DockerOptions(**bad)
    with pytest.raises(ValueError, match="remove_container"):
        DockerOptions(docker_args=["--rm"])


def test_the_build_runs_as_root_with_debootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no debootstrap on PATH
    with pytest.raises(ImageBuildError, match="apt-get install -y debootstrap"):
        images._build_rootfs("hrm-spawn/rootfs:never-built")
