"""Turning a source into a RepoEnv: source parsing, layout detection, deterministic base commit, venv."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from fixtures.calc_source import PACKAGE, TESTS

from hrm_spawn.envs.build_repo import (
    RepoBuildError,
    commit_all,
    default_name,
    detect_pythonpath,
    detect_test_paths,
    dev_test_requirements,
    extract_sdist,
    parse_source,
    prepare_repo,
)
from hrm_spawn.envs.repos import RepoEnv


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    "source, kind",
    [
        ("pypi:tinydb==4.9.0", "pypi"),
        ("https://github.com/msiemens/tinydb.git", "git"),
        ("git@github.com:msiemens/tinydb.git", "git"),
        ("file:///srv/repos/calc", "git"),
    ],
)
def test_parse_source_kinds(source: str, kind: str) -> None:
    assert parse_source(source)[0] == kind


def test_parse_source_directory(tmp_path: Path) -> None:
    assert parse_source(str(tmp_path)) == ("dir", tmp_path.resolve())


@pytest.mark.parametrize("source, message", [("pypi:tinydb", "exact version"), ("nowhere/at/all", "neither")])
def test_parse_source_errors_name_the_source(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_source(source)
    assert source in str(info.value)


def test_default_names(tmp_path: Path) -> None:
    assert default_name("pypi", ("TinyDB", "4.9.0"), "pypi:TinyDB==4.9.0") == "tinydb__tinydb.4.9.0"
    assert default_name("git", "https://github.com/a/b.git", "https://github.com/a/b.git") == "a__b"
    assert default_name("dir", tmp_path / "my calc", str(tmp_path / "my calc")) == "my_calc__my_calc.local"


def test_layout_detection(tmp_path: Path) -> None:
    _write(tmp_path / "flat", {"pkg/__init__.py": "", "tests/test_a.py": ""})
    _write(tmp_path / "src", {"src/pkg/__init__.py": "", "test/test_a.py": ""})
    _write(tmp_path / "top", {"mod.py": "", "test_mod.py": ""})
    assert (detect_pythonpath(tmp_path / "flat"), detect_test_paths(tmp_path / "flat")) == (["."], ["tests"])
    assert (detect_pythonpath(tmp_path / "src"), detect_test_paths(tmp_path / "src")) == (["src"], ["test"])
    assert detect_test_paths(tmp_path / "top") == ["test_mod.py"]


def test_base_commit_depends_on_files_only(tmp_path: Path) -> None:
    commits = []
    for name in ("one", "two"):
        _write(tmp_path / name, PACKAGE)
        commits.append(commit_all(tmp_path / name))
    assert commits[0] == commits[1]
    status = subprocess.run(
        ["git", "-C", str(tmp_path / "one"), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


def test_test_requirements_drop_dev_tools(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[dependency-groups]\nlint = ["ruff"]\n'
        'dev = ["pytest~=9.0", "pytest-cov~=7.0", "sphinx~=8.1", "pyyaml~=6.0", {include-group = "typing"}]\n'
        'typing = ["mypy", "types-PyYAML", "hypothesis>=6"]\n'
    )
    assert dev_test_requirements(tmp_path) == ["pytest~=9.0", "pyyaml~=6.0", "hypothesis>=6"]


def test_extract_sdist_refuses_escaping_members(tmp_path: Path) -> None:
    archive = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("../evil.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(tarfile.TarError):
        extract_sdist(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_reuse_refuses_another_source(hrm_home: Path, tmp_path: Path) -> None:
    root = hrm_home / "repos" / "x__x.local"
    root.mkdir(parents=True)
    RepoEnv(name="x__x.local", source="pypi:x==1.0", root=str(root), python="/bin/false").save()
    with pytest.raises(ValueError, match="was built from 'pypi:x==1.0'"):
        prepare_repo(str(tmp_path), name="x__x.local")


def test_bad_name_is_refused(hrm_home: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plain identifier"):
        prepare_repo(str(tmp_path), name="../escape")


@pytest.mark.slow
def test_prepare_local_directory(hrm_home: Path, tmp_path: Path) -> None:
    """A directory without packaging metadata: the venv gets pytest from PyPI, tests import the checkout."""
    src = tmp_path / "calc"
    _write(src, {**PACKAGE, **TESTS})
    repo = prepare_repo(str(src))
    assert repo.name == "calc__calc.local" and repo.base_commit and repo.test_run_s > 0
    assert (repo.pythonpath, repo.test_paths) == (["."], ["tests"])
    assert RepoEnv.load(repo.name) == repo
    assert prepare_repo(str(src)) == repo  # reused, not rebuilt
    probe = subprocess.run([repo.python, "-c", "import pytest, calc"], capture_output=True, cwd="/")
    assert b"No module named 'calc'" in probe.stderr


def test_failing_suite_is_reported(hrm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No passing test at base is an error that shows the test output (venv creation skipped here)."""
    import hrm_spawn.envs.build_repo as br

    src = tmp_path / "broken"
    _write(src, {"pkg/__init__.py": "", "tests/test_a.py": "def test_a():\n    assert False, 'always'\n"})
    monkeypatch.setattr(br, "make_venv", _link_venv)
    with pytest.raises(RepoBuildError, match="no test passes"):
        prepare_repo(str(src))


def _link_venv(venv: Path, checkout: Path) -> None:
    """Stand-in venv: this interpreter (it has pytest), so the test needs no network."""
    import sys

    (venv / "bin").mkdir(parents=True)
    wrapper = venv / "bin" / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
