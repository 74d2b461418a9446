"""Turn a source (``pypi:NAME==VERSION``, a directory, a git URL) into a RepoEnv under data_dir()/repos/.

The checkout is committed to a fresh git repository with a fixed author and date, so the same source
always gives the same base commit. The venv holds pytest and the project's dependencies but not the
project itself: tests import the checkout through PYTHONPATH, so a sandbox copy is what runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from hrm_spawn.envs.paths import repos_dir
from hrm_spawn.envs.repos import REPO_NAME_RE, RepoEnv, source_head
from hrm_spawn.envs.results import TestReport
from hrm_spawn.envs.testlog import parse_report, pytest_command, test_env

PYPI_RE = re.compile(
    r"^pypi:(?P<name>[A-Za-z0-9][A-Za-z0-9._\-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_\-]*)$"
)
GIT_RE = re.compile(r"^(https?://|ssh://|git://|file://|git@)\S+$")
# Fixed identity and date: the base commit depends on the files only.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "hrm-spawn",
    "GIT_AUTHOR_EMAIL": "hrm-spawn@localhost",
    "GIT_COMMITTER_NAME": "hrm-spawn",
    "GIT_COMMITTER_EMAIL": "hrm-spawn@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    "__pycache__",
    "*.pyc",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".pytest_cache",
    "*.egg-info",
    "build",
    "dist",
)
# Test extras/groups often carry linters, type checkers and doc builders; tests do not need them.
DEV_TOOL_RE = re.compile(
    r"^(sphinx.*|furo|myst.*|docutils|coverage|coveralls|codecov|pytest-cov|.*mypy.*|types-.*|.*pycodestyle.*|"
    r"flake8.*|pylint|black|ruff|isort|pre-commit|tox|nox|twine|build|wheel|bump.*)$",
    re.IGNORECASE,
)
TEST_GROUPS = ("test", "tests", "testing", "dev")
PIP_TIMEOUT_S = 900
BASELINE_TIMEOUT_S = 900


class RepoBuildError(RuntimeError):
    """A source that could not be turned into a working RepoEnv; the message says which step failed."""


def prepare_repo(source: str, name: str | None = None, root: Path | None = None) -> RepoEnv:
    """Build (or reuse) ``data_dir()/repos/<name>``: checkout at a base commit, venv, full test run at base."""
    kind, detail = parse_source(source)
    name = name or default_name(kind, detail, source)
    if not REPO_NAME_RE.match(name):
        raise ValueError(f"repo name {name!r} is not a plain identifier (letters, digits, '_', '.', '-')")
    repo_root = (root or repos_dir()) / name
    existing = _reuse(repo_root, source)
    if existing is not None:
        return existing
    if repo_root.exists():
        shutil.rmtree(repo_root)  # a half-built earlier attempt
    repo_root.mkdir(parents=True)
    checkout = repo_root / "checkout"
    source_commit = _fetch(kind, detail, source, checkout)
    base_commit = commit_all(checkout)
    env = RepoEnv(
        name=name,
        source=source,
        root=str(repo_root),
        python=str(repo_root / "venv" / "bin" / "python"),
        base_commit=base_commit,
        pythonpath=detect_pythonpath(checkout),
        test_paths=detect_test_paths(checkout),
        source_commit=source_commit,  # a row's base_commit naming the source maps to base_commit
    )
    make_venv(repo_root / "venv", checkout)
    report, _ = run_suite(env, env.checkout, timeout_s=BASELINE_TIMEOUT_S)
    passed = [t for t in report.status if report.passed(t)]
    if not passed:
        raise RepoBuildError(
            f"{source}: no test passes at the base commit (collected {len(report.status)}); "
            f"output tail:\n{report.log_tail[-2000:]}"
        )
    env.test_run_s = round(report.duration_s, 3)
    (repo_root / "baseline.json").write_text(json.dumps(report.to_dict(), indent=1))
    env.save()
    return env


def baseline(env: RepoEnv) -> TestReport:
    """The clean run at the base commit (``baseline.json``), run and saved now if a repo lacks it."""
    path = Path(env.root) / "baseline.json"
    if path.is_file():
        return TestReport.from_dict(json.loads(path.read_text()))
    report, _ = run_suite(env, env.checkout, timeout_s=BASELINE_TIMEOUT_S)
    if not report.status:
        raise RepoBuildError(
            f"{env.name}: the test suite reports no tests at the base commit:\n{report.log_tail}"
        )
    path.write_text(json.dumps(report.to_dict(), indent=1))
    return report


def parse_source(source: str) -> tuple[str, Any]:
    """("pypi", (name, version)) | ("dir", Path) | ("git", url); a clear error otherwise."""
    match = PYPI_RE.match(source)
    if match:
        return "pypi", (match["name"], match["version"])
    if source.startswith("pypi:"):
        raise ValueError(f"source {source!r}: expected pypi:NAME==VERSION (an exact version)")
    if GIT_RE.match(source) or source.endswith(".git"):
        return "git", source
    path = Path(source).expanduser()
    if path.is_dir():
        return "dir", path.resolve()
    raise ValueError(f"source {source!r} is neither pypi:NAME==VERSION, an existing directory, nor a git URL")


def default_name(kind: str, detail: Any, source: str) -> str:
    """tinydb__tinydb.4.9.0 for PyPI; owner__repo for git; <dir>__<dir>.local for a directory."""
    if kind == "pypi":
        project = re.sub(r"[^A-Za-z0-9_.\-]", "_", detail[0].lower())
        return f"{project}__{project}.{detail[1]}"
    if kind == "git":
        parts = [p for p in re.split(r"[/:]", source.rstrip("/").removesuffix(".git")) if p]
        owner, repo = (parts[-2], parts[-1]) if len(parts) >= 2 else ("git", parts[-1])
        return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{owner}__{repo}")
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", detail.name) or "repo"
    return f"{base}__{base}.local"


def _reuse(repo_root: Path, source: str) -> RepoEnv | None:
    if not (repo_root / "repo.json").is_file():
        return None
    env = RepoEnv.load(repo_root.name, repo_root.parent)
    if env.source != source:
        raise ValueError(
            f"repository {repo_root.name!r} was built from {env.source!r}, not {source!r}: "
            f"pass another name or remove {repo_root}"
        )
    ok = subprocess.run([env.python, "-c", "import pytest"], capture_output=True).returncode == 0
    return env if ok else None


def _fetch(kind: str, detail: Any, source: str, checkout: Path) -> str:
    """Copy the source into ``checkout``; the source's git commit when it had one, else ""."""
    head = ""
    if kind == "dir":
        shutil.copytree(detail, checkout, ignore=COPY_IGNORE, symlinks=True)
        head = source_head(detail)
    elif kind == "git":
        _run(["git", "clone", "--quiet", "--depth", "1", source, str(checkout)], f"git clone {source}")
        head = source_head(checkout)
        shutil.rmtree(checkout / ".git")
    else:
        with tempfile.TemporaryDirectory(prefix="hrm-sdist-") as tmp:
            spec = f"{detail[0]}=={detail[1]}"
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "--dest",
                    tmp,
                    spec,
                ],
                f"pip download {spec}",
            )
            archives = sorted(Path(tmp).iterdir())
            if not archives:
                raise RepoBuildError(f"{source}: pip download produced no sdist")
            extract_sdist(archives[0], checkout)
    return head


def extract_sdist(archive: Path, dest: Path) -> None:
    """Unpack an sdist's single top folder into ``dest`` (refusing members outside it)."""
    with tempfile.TemporaryDirectory(prefix="hrm-unpack-") as tmp:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise RepoBuildError(f"{archive.name}: member {member!r} leaves the archive")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        tops = list(Path(tmp).iterdir())
        top = tops[0] if len(tops) == 1 and tops[0].is_dir() else Path(tmp)
        shutil.copytree(top, dest, symlinks=True)


def commit_all(checkout: Path) -> str:
    """Commit every file (ignored ones too: the sdist is the source of truth) and return the commit."""
    git = ["git", "-C", str(checkout)]
    _run([*git, "init", "--quiet", "--initial-branch", "main"], "git init")
    # Test runs must not dirty the tree: caches never show up as changes.
    exclude = checkout / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text("__pycache__/\n*.pyc\n.pytest_cache/\n")
    _run([*git, "add", "--all", "--force", "."], "git add")
    _run(
        [*git, "-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "-m", "base"],
        "git commit",
        env=GIT_ENV,
    )
    return _run([*git, "rev-parse", "HEAD"], "git rev-parse").strip()


def detect_pythonpath(checkout: Path) -> list[str]:
    """["src"] for a src layout, else ["."]."""
    src = checkout / "src"
    if src.is_dir() and any(p.suffix == ".py" or (p / "__init__.py").is_file() for p in src.iterdir()):
        return ["src"]
    return ["."]


def detect_test_paths(checkout: Path) -> list[str]:
    """What a full run collects: tests/ or test/ (also under src/), else top-level test files, else the root."""
    for rel in ("tests", "test", "src/tests", "testing"):
        if (checkout / rel).is_dir():
            return [rel]
    files = sorted(p.name for p in checkout.glob("test_*.py")) + sorted(
        p.name for p in checkout.glob("*_test.py")
    )
    return files or ["."]


def make_venv(venv: Path, checkout: Path) -> None:
    """A venv with pytest and the project's runtime and test dependencies, without the project."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "python -m venv")
    python = str(venv / "bin" / "python")
    wanted = ["pytest", *dev_test_requirements(checkout)]
    if any((checkout / f).is_file() for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        # Resolving the project itself brings in its runtime dependencies (it is then left out).
        extras = [e for e in project_extras(checkout) if e in TEST_GROUPS]
        wanted.insert(0, f"{checkout}[{','.join(extras)}]" if extras else str(checkout))
    pins = _resolve(python, wanted, checkout)
    if pins:
        _run(
            [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", *pins],
            "pip install test dependencies",
        )


def _resolve(python: str, wanted: list[str], checkout: Path) -> list[str]:
    """Pinned requirements pip would install for ``wanted``, minus the project and dev tools."""
    with tempfile.TemporaryDirectory(prefix="hrm-resolve-") as tmp:
        report_path = Path(tmp) / "report.json"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                python,
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report_path),
                *wanted,
            ],
            "pip resolve dependencies",
        )
        report = json.loads(report_path.read_text())
    pins = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        url = item.get("download_info", {}).get("url", "")
        if url.startswith("file://") and Path(url[7:]).resolve() == checkout.resolve():
            continue  # the project itself: it runs from the checkout
        if DEV_TOOL_RE.match(meta.get("name", "")) and meta.get("name", "").lower() != "pytest":
            continue
        pins.append(f"{meta['name']}=={meta['version']}")
    return sorted(pins)


def project_extras(checkout: Path) -> list[str]:
    meta = _pyproject(checkout).get("project", {})
    extras = list(meta.get("optional-dependencies", {}))
    pkg_info = checkout / "PKG-INFO"
    if pkg_info.is_file():
        extras += re.findall(r"^Provides-Extra: *(\S+)", pkg_info.read_text(errors="replace"), re.MULTILINE)
    return sorted(set(extras))


def dev_test_requirements(checkout: Path) -> list[str]:
    """Test dependency groups (PEP 735) and requirements-test*.txt files, dev tools dropped."""
    groups = _pyproject(checkout).get("dependency-groups", {})
    reqs: list[str] = []
    for group in TEST_GROUPS:
        reqs += [r for r in _group(groups, group, set()) if isinstance(r, str)]
    for path in sorted(checkout.glob("requirements*test*.txt")) + sorted(
        checkout.glob("test*requirements*.txt")
    ):
        reqs += [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    kept = []
    for req in reqs:
        project = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]
        if req and not req.startswith("-") and project and not DEV_TOOL_RE.match(project):
            kept.append(req)
    return kept


def _group(groups: dict[str, Any], name: str, seen: set[str]) -> list[Any]:
    if name in seen or name not in groups:
        return []
    seen.add(name)
    out: list[Any] = []
    for entry in groups[name]:
        if isinstance(entry, dict) and "include-group" in entry:
            out += _group(groups, entry["include-group"], seen)
        else:
            out.append(entry)
    return out


def _pyproject(checkout: Path) -> dict[str, Any]:
    path = checkout / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RepoBuildError(f"{path}: not valid TOML: {exc}") from exc


def suite_command(
    env: RepoEnv, workdir: Path, extra: list[str] | None = None, timeout_s: float | None = None
) -> str:
    """The framed full-suite pytest command for a copy of the checkout at ``workdir``."""
    return pytest_command(
        env.python, [*env.test_paths, *(extra or [])], test_env(env.pythonpath, str(workdir)), timeout_s
    )


def run_suite(
    env: RepoEnv, workdir: Path, extra: list[str] | None = None, timeout_s: float = 300.0
) -> tuple[TestReport, str]:
    """Run the full suite in ``workdir`` (a copy of the checkout): the parsed report and the raw output."""
    command = suite_command(env, workdir, extra, timeout_s)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=workdir,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s + 10,
        )
        output, timed_out = proc.stdout + proc.stderr, proc.returncode in (124, 137)
    except subprocess.TimeoutExpired as exc:
        output, timed_out = _text(exc.stdout) + _text(exc.stderr), True
    return parse_report(output, time.perf_counter() - start, timed_out), output


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    import os

    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=full_env
        )
    except subprocess.TimeoutExpired as exc:
        raise RepoBuildError(f"{what}: timed out after {PIP_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        raise RepoBuildError(
            f"{what} failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout
