"""Locally built repositories: a clean git checkout, a venv with its test dependencies, a repo.json.

``data_dir()/repos/<name>/`` holds ``checkout/``, ``venv/`` and ``repo.json``; ``<name>`` is the
``repo`` field of the tasks built from it. The local sandbox finds a task's repository here.

SWE-smith rows name their repository ``swesmith/<owner>__<name>.<sha8>`` and their ``base_commit`` is a
commit of the source the mirror was made from. A repository prepared from a local copy of that source is
re-committed (``checkout/`` gets a fresh, deterministic commit), so it records what it stands for:
``aliases`` (the SWE-smith names it answers to) and ``source_commit`` (the commit of the copied source,
which ``resolve_commit`` maps to ``base_commit``). :func:`resolve_repo_name` turns a row's ``repo`` into
the directory name, never into a path outside ``repos/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hrm_spawn.envs.paths import repos_dir

REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_NAMESPACED_RE = re.compile(r"^(?P<ns>[A-Za-z0-9][A-Za-z0-9_.\-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
_SWESMITH_SHA_RE = re.compile(r"__[A-Za-z0-9_.\-]+\.([0-9a-fA-F]{8})$")  # <owner>__<name>.<sha8>


@dataclass
class RepoEnv:
    name: str  # identifier, e.g. tinydb__tinydb.4.9.0 (TaskInstance.repo)
    source: str  # pypi:tinydb==4.9.0, a directory, or a git URL
    root: str  # absolute path of data_dir()/repos/<name>
    python: str  # venv interpreter with the test dependencies
    base_commit: str = ""
    pythonpath: list[str] = field(default_factory=lambda: ["."])  # relative to the checkout
    test_paths: list[str] = field(default_factory=lambda: ["tests"])  # what a full run collects
    test_run_s: float = 0.0  # wall seconds of one full test run
    source_commit: str = ""  # HEAD of the source when it was a git checkout; maps to base_commit
    aliases: list[str] = field(default_factory=list)  # other names, e.g. the SWE-smith repo_name
    # A SWE-smith profile registered for this copy: {"owner", "repo", "commit"} (envs/swesmith_py.py).
    swesmith_profile: dict[str, str] | None = None

    @property
    def checkout(self) -> Path:
        return Path(self.root) / "checkout"

    def resolve_commit(self, commit: str | None) -> str:
        """The checkout's commit for a row's ``base_commit``: the source's commit (or a prefix of it,
        7+ hex digits) becomes ``base_commit``; anything else is returned as given (it may exist)."""
        if not commit:
            return self.base_commit
        known = [c for c in (self.source_commit, self.base_commit) if c]
        if _HEX_RE.match(commit) and any(c.lower().startswith(commit.lower()) for c in known):
            return self.base_commit
        return commit

    def answers_to(self, name: str) -> bool:
        return name == self.name or name in self.aliases

    def save(self) -> Path:
        path = Path(self.root) / "repo.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepoEnv:
        """From repo.json; fields written by a newer version are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> RepoEnv:
        name = resolve_repo_name(name, root)
        path = (root or repos_dir()) / name / "repo.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"repository {name!r} is not built here: {path} is missing "
                "(build it with `hrm-spawn tasks build`, or use the docker/remote sandbox)"
            )
        return cls.from_dict(json.loads(path.read_text()))


def plain_repo_name(repo: str) -> str:
    """``repo`` without its one namespace (``swesmith/a__b.1234abcd`` -> ``a__b.1234abcd``), checked to be
    a plain identifier (no ``/``, no ``..``): it becomes a directory name under ``repos/``."""
    match = _NAMESPACED_RE.match(repo)
    name = match.group("name") if match else repo
    if not REPO_NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"repo name {repo!r} is not a plain identifier (letters, digits, '_', '.', '-'; "
            "at most one 'namespace/' in front)"
        )
    return name


def resolve_repo_name(repo: str, root: Path | None = None) -> str:
    """The directory under ``root`` (default ``data_dir()/repos``) that holds ``repo``: the name itself
    (namespace dropped) when built under it; else the repository that lists it among its ``aliases``;
    else, for a SWE-smith name ``<owner>__<name>.<sha8>``, the one repository prepared from a copy of the
    source at that commit (``source_commit``). Without a match the plain name is returned, and loading it
    says it is not built; two copies of that commit are an error naming both."""
    name = plain_repo_name(repo)
    base = root or repos_dir()
    if (base / name / "repo.json").is_file() or not base.is_dir():
        return name
    sha = _SWESMITH_SHA_RE.search(name)
    by_commit = []
    for path in sorted(base.glob("*/repo.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a half-written or foreign repo.json is not a match
        if name in (data.get("aliases") or []) or repo in (data.get("aliases") or []):
            return path.parent.name
        if sha and str(data.get("source_commit") or "").lower().startswith(sha.group(1).lower()):
            by_commit.append(path.parent.name)
    if len(by_commit) > 1:
        raise ValueError(
            f"repo {repo!r}: several repositories were prepared from commit {sha.group(1) if sha else ''}: "
            f"{', '.join(by_commit)} (name one of them after {name!r})"
        )
    return by_commit[0] if by_commit else name


def source_head(source_dir: Path) -> str:
    """HEAD of ``source_dir`` when it is the top of a git work tree, else "" (not a git checkout)."""
    import subprocess

    if not (source_dir / ".git").exists():
        return ""
    proc = subprocess.run(
        ["git", "-C", str(source_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=60
    )
    head = proc.stdout.strip()
    return head if proc.returncode == 0 and _HEX_RE.match(head) else ""


def patch_check(env: RepoEnv, commit: str, patch: str) -> tuple[str, str] | None:
    """Dry-run ``patch`` on the checkout at ``commit`` (a scratch index: the checkout is not touched).

    None when it applies, else ``(field, reason)``: ``base_commit`` for a commit the checkout lacks,
    ``patch`` for a patch that does not apply (git's message).
    """
    import os
    import subprocess
    import tempfile

    git = ["git", "-C", str(env.checkout)]
    with tempfile.TemporaryDirectory(prefix="hrm-apply-") as tmp:
        run_env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        tree = subprocess.run(
            [*git, "read-tree", commit], capture_output=True, text=True, env=run_env, timeout=120
        )
        if tree.returncode != 0:
            return "base_commit", f"commit {commit} is not in {env.checkout}: {_one_line(tree.stderr)[-300:]}"
        check = subprocess.run(
            [*git, "apply", "--check", "--cached", "--whitespace=nowarn", "-"],
            input=patch if patch.endswith("\n") else patch + "\n",
            capture_output=True,
            text=True,
            env=run_env,
            timeout=120,
        )
    if check.returncode != 0:
        return "patch", f"does not apply to {env.name} at {commit[:12]}: {_one_line(check.stderr)[-500:]}"
    return None


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
