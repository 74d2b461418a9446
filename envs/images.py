"""Docker images for the docker sandbox, built from Debian packages and PyPI wheels only (no registry).

Three images, each tagged with a hash of everything it is built from, so a build runs once and a change
to any input (recipe, package list, pinned versions, repository commit) gives a new tag:

* ``hrm-spawn/rootfs:<key>`` - a minimal Debian (``debootstrap --variant=minbase`` + python3, venv, git,
  procps), ``docker import``-ed. Needs root and ``debootstrap`` on this host.
* ``hrm-spawn/base:<key>`` - + SWE-ReX in ``/opt/swerex`` with ``swerex-remote`` on PATH (SWE-ReX's
  DockerDeployment starts the server in the container with that command).
* ``hrm-spawn/testbed.<repo>:<key>`` - + a built repository (``hrm-spawn tasks build``) at ``/testbed``
  and its test dependencies in ``/opt/miniconda3/envs/testbed``: the SWE-smith image layout that the
  sandbox's docker deployment expects.

Wheels are downloaded on this host (``pip download``, exact pins taken from the installed versions) and
copied into the build, so nothing inside a container needs the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hrm_spawn.envs.paths import data_dir, repos_dir
from hrm_spawn.envs.repos import RepoEnv

SUITE = "bookworm"
MIRROR = os.environ.get("HRM_SPAWN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv", "git", "procps")  # procps: the sandbox kills process trees with pgrep
CONTAINER_PYTHON = "3.11"  # bookworm's python3; wheels are downloaded for it
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
PATH_ENV = "/opt/miniconda3/envs/testbed/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TESTBED_VENV = "/opt/miniconda3/envs/testbed"  # where SWE-smith images keep the test interpreter
RECIPE_VERSION = "1"  # bump when the build steps below change in a way the hashed inputs do not show
BUILD_TIMEOUT_S = 1800
# Few steps on purpose: each step is a layer commit, and a commit costs seconds per step (fuse-overlayfs
# compares the whole tree), far more than the work done in it.
DOCKERFILE_BASE = """\
FROM {parent}
COPY wheels /tmp/swerex-wheels
RUN python3 -m venv /opt/swerex \\
 && /opt/swerex/bin/pip install -q --no-index --no-cache-dir --find-links /tmp/swerex-wheels \\
      -r /tmp/swerex-wheels/requirements.txt \\
 && ln -s /opt/swerex/bin/swerex-remote /usr/local/bin/swerex-remote \\
 && rm -rf /tmp/swerex-wheels && swerex-remote --version
"""
DOCKERFILE_TESTBED = """\
FROM {parent}
COPY . /tmp/hrm-build
RUN python3 -m venv {venv} \\
 && {venv}/bin/pip install -q --no-index --no-cache-dir --find-links /tmp/hrm-build/wheels \\
      -r /tmp/hrm-build/wheels/requirements.txt \\
 && printf '%s\\n' {paths} > "$({venv}/bin/python -c 'import site; print(site.getsitepackages()[0])')/testbed.pth" \\
 && mv /tmp/hrm-build/testbed /testbed && rm -rf /tmp/hrm-build \\
 && git -C /testbed rev-parse HEAD && {venv}/bin/python -m pytest --version
"""


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step failed and how to fix it."""


@dataclass
class ImageSpec:
    """One image to build: its tag (from the hash of ``inputs``) and what the build needs."""

    kind: str  # rootfs | base | testbed
    tag: str
    inputs: dict = field(repr=False)  # everything the key hashes
    parent: ImageSpec | None = None
    dockerfile: str = ""
    pins: list[str] = field(default_factory=list)
    repo: RepoEnv | None = None


def cache_key(inputs: dict) -> str:
    """12 hex digits of the SHA-256 of ``inputs`` as canonical JSON."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rootfs_spec() -> ImageSpec:
    inputs = {"kind": "rootfs", "suite": SUITE, "variant": "minbase", "packages": sorted(PACKAGES)}
    inputs |= {"trim": list(TRIM), "path": PATH_ENV, "recipe": RECIPE_VERSION}
    return ImageSpec("rootfs", f"hrm-spawn/rootfs:{cache_key(inputs)}", inputs)


def base_spec() -> ImageSpec:
    parent = rootfs_spec()
    pins = closure_pins(["swe-rex"])
    dockerfile = DOCKERFILE_BASE.format(parent=parent.tag)
    inputs = {"kind": "base", "dockerfile": dockerfile, "pins": pins, "python": CONTAINER_PYTHON}
    return ImageSpec("base", f"hrm-spawn/base:{cache_key(inputs)}", inputs, parent, dockerfile, pins)


def repo_spec(repo: RepoEnv) -> ImageSpec:
    """The image of a built repository; the tag changes with its commit, test pins or import path."""
    parent = base_spec()
    pins = repo_pins(repo)
    paths = " ".join(shlex.quote(posixpath.normpath(posixpath.join("/testbed", p))) for p in repo.pythonpath)
    dockerfile = DOCKERFILE_TESTBED.format(parent=parent.tag, venv=TESTBED_VENV, paths=paths)
    commit = _git(repo.checkout, "rev-parse", "HEAD").strip()
    inputs = {"kind": "testbed", "dockerfile": dockerfile, "pins": pins, "commit": commit, "repo": repo.name}
    tag = f"hrm-spawn/testbed.{docker_name(repo.name)}:{cache_key(inputs)}"
    return ImageSpec("testbed", tag, inputs, parent, dockerfile, pins, repo)


def docker_name(name: str) -> str:
    """A repository name as a Docker image path component: lowercase, separators Docker accepts."""

    def separator(match: re.Match) -> str:
        return match.group() if re.fullmatch(r"[._]|__|-+", match.group()) else "-"

    text = re.sub(r"[^a-z0-9]+", separator, name.lower())
    return re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", text) or "repo"


# -- pinned requirements -----------------------------------------------------------------------------


def closure_pins(roots: list[str]) -> list[str]:
    """``name==version`` for ``roots`` and everything they require, as installed in this interpreter."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if canonicalize_name(name) in pins:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise ImageBuildError(f"{name} is not installed here, so its version cannot be pinned") from None
        pins[canonicalize_name(name)] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(pins.values(), key=str.lower)


# Only the venv's own site-packages: not the current directory, PYTHONPATH or user site (python -I).
_LIST_DISTS = (
    "import importlib.metadata as m, json, site; "
    "dists = m.distributions(path=site.getsitepackages()); "
    "print(json.dumps(sorted({d.metadata['Name'] + '==' + d.version for d in dists})))"
)


def repo_pins(repo: RepoEnv) -> list[str]:
    """The test dependencies of ``repo``: its own venv's packages, or pytest's closure when it has none."""
    python = Path(repo.python)
    if not python.is_relative_to(repo.root):  # e.g. the test fixture runs on this interpreter
        return closure_pins(["pytest"])
    proc = subprocess.run([str(python), "-I", "-c", _LIST_DISTS], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ImageBuildError(f"cannot list the packages of {python}: {proc.stderr.strip()[-1000:]}")
    pins = [p for p in json.loads(proc.stdout) if not p.lower().startswith(("pip==", "setuptools=="))]
    if not any(p.lower().startswith("pytest==") for p in pins):
        raise ImageBuildError(f"{python} has no pytest: rebuild the repository with `hrm-spawn tasks build`")
    return sorted(pins, key=str.lower)


# -- building -----------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    tag: str
    kind: str
    built: bool  # False: the tag was already present
    seconds: float


def image_exists(tag: str) -> bool:
    proc = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=60)
    return proc.returncode == 0


def ensure(spec: ImageSpec, force: bool = False) -> list[BuildReport]:
    """Build ``spec`` and any missing parent; an image whose tag is present is not rebuilt."""
    reports = ensure(spec.parent) if spec.parent is not None else []
    start = time.perf_counter()
    if not force and image_exists(spec.tag):
        return [*reports, BuildReport(spec.tag, spec.kind, False, time.perf_counter() - start)]
    if spec.kind == "rootfs":
        _build_rootfs(spec.tag)
    else:
        _build_dockerfile(spec)
    return [*reports, BuildReport(spec.tag, spec.kind, True, time.perf_counter() - start)]


def _build_rootfs(tag: str) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("building the Debian rootfs needs root (debootstrap): run this as root")
    with tempfile.TemporaryDirectory(prefix="hrm-rootfs-", dir=_scratch()) as tmp:
        root = Path(tmp) / "rootfs"
        try:
            _debootstrap_and_import(root, tag)
        finally:
            _unmount_under(root)  # a failed debootstrap can leave /proc mounted in the target


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever is mounted below ``root``, deepest first, so removing it is safe."""
    mounts = Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").is_file() else []
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _debootstrap_and_import(root: Path, tag: str) -> None:
    """debootstrap into ``root``, drop caches and docs, stream it into `docker import`."""
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(root),
        MIRROR,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        log = root / "debootstrap" / "debootstrap.log"
        detail = log.read_text(errors="replace") if log.is_file() else proc.stdout + proc.stderr
        raise ImageBuildError(f"debootstrap {SUITE} from {MIRROR} failed:\n{detail[-2000:]}")
    for rel in TRIM:  # caches and docs: a smaller image to import
        shutil.rmtree(root / rel, ignore_errors=True)
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    changes = ["--change", f"ENV PATH={PATH_ENV}", "--change", 'CMD ["/bin/bash"]']
    imp = subprocess.run(
        ["docker", "import", *changes, "-", tag], stdin=tar.stdout, capture_output=True, text=True
    )
    tar.stdout.close()  # type: ignore[union-attr]
    if tar.wait() != 0 or imp.returncode != 0:
        raise ImageBuildError(f"docker import {tag} failed: {imp.stderr.strip()[-2000:]}")


def _build_dockerfile(spec: ImageSpec) -> None:
    with tempfile.TemporaryDirectory(prefix="hrm-image-", dir=_scratch()) as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(spec.dockerfile)
        download_wheels(spec.pins, ctx / "wheels")
        if spec.repo is not None:
            _copy_checkout(spec.repo, ctx / "testbed")
        env = dict(os.environ)
        if not _has_buildx():
            env["DOCKER_BUILDKIT"] = "0"  # the legacy builder ships with the engine; BuildKit needs buildx
        # No --label: the legacy builder turns it into one more step, i.e. one more slow layer commit.
        cmd = [
            "docker",
            "build",
            "-q",
            "--force-rm",
            "-t",
            spec.tag,
            str(ctx),
        ]  # --force-rm: none left on failure
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env)
        if proc.returncode != 0:
            raise ImageBuildError(f"docker build {spec.tag} failed:\n{(proc.stderr + proc.stdout)[-3000:]}")


def download_wheels(pins: list[str], dest: Path) -> None:
    """Wheels for ``pins`` for the container's Python, plus a requirements.txt naming them."""
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", CONTAINER_PYTHON, "--dest", str(dest), *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise ImageBuildError(f"pip download of {len(pins)} pinned wheels failed:\n{proc.stderr[-2000:]}")
    (dest / "requirements.txt").write_text("".join(f"{p}\n" for p in pins))


def _copy_checkout(repo: RepoEnv, dest: Path) -> None:
    """A clone of the repository at its commit (history kept: the sandbox resets /testbed with git)."""
    _git(repo.checkout.parent, "clone", "-q", "--no-hardlinks", str(repo.checkout), str(dest))
    _git(dest, "remote", "remove", "origin")
    # Test runs must not dirty the tree (the same excludes as a locally built checkout).
    (dest / ".git" / "info").mkdir(exist_ok=True)
    (dest / ".git" / "info" / "exclude").write_text("__pycache__/\n*.pyc\n.pytest_cache/\n")


def _has_buildx() -> bool:
    return subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0


def _scratch() -> Path:
    path = data_dir() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout


# -- finding repositories and the CLI ------------------------------------------------------------------


def find_repo(name: str) -> RepoEnv:
    """A built repository by exact name or unique prefix (``tinydb`` -> ``tinydb__tinydb.4.9.0``)."""
    built = sorted(p.parent.name for p in repos_dir().glob("*/repo.json"))
    matches = [n for n in built if n == name] or [n for n in built if n.startswith(name)]
    if len(matches) != 1:
        found = ", ".join(built) or "none"
        what = "matches several" if matches else "matches no"
        raise ImageBuildError(
            f"--repo {name!r} {what} built repository under {repos_dir()} (built: {found}); "
            "build one with `hrm-spawn tasks build --repo pypi:NAME==VERSION`"
        )
    return RepoEnv.load(matches[0])


def specs_for(repos: list[str]) -> list[ImageSpec]:
    """The base image alone, or one testbed image per named repository (each brings its parents)."""
    return [repo_spec(find_repo(name)) for name in repos] if repos else [base_spec()]


def cli_images_build(args) -> int:
    specs = specs_for(list(args.repo or []))
    if args.check:
        missing = [s.tag for s in specs for s in _lineage(s) if not image_exists(s.tag)]
        for tag in dict.fromkeys(missing):
            print(f"missing {tag}")
        return 1 if missing else 0
    for spec in specs:
        for report in ensure(spec, force=args.force):
            state = f"built in {report.seconds:.1f} s" if report.built else "present"
            if not args.quiet:
                print(f"{report.kind:8s} {report.tag}  {state}")
        if args.quiet:
            print(spec.tag)  # for scripts: IMAGE=$(hrm-spawn images build -q --repo tinydb)
    return 0


def _lineage(spec: ImageSpec) -> list[ImageSpec]:
    return ([*_lineage(spec.parent)] if spec.parent else []) + [spec]
