"""A Sandbox over SWE-ReX deployments: prepare a task once, reset with git, apply, run tests, evaluate.

Deployments (``SandboxConfig.deployment``):

* ``local``  - SWE-ReX's LocalDeployment: commands run **on this host**, as this user. The repository
  comes from ``data_dir()/repos/<task.repo>`` (built by ``hrm-spawn tasks build``) and each sandbox works
  in its own ``git clone --shared`` under ``data_dir()/sandboxes/<sandbox id>/``.
* ``docker`` - SWE-ReX's DockerDeployment on ``task.image_name`` (SWE-smith images: repo at /testbed,
  conda env ``testbed``).
* ``remote`` - a ``swerex-remote`` server at host:port, token read from the env var ``token_env``; many
  sandboxes may share one server (envs/sandbox_remote.py). Without ``repos_dir`` the server is assumed
  to run in a SWE-smith image (/testbed layout).
* ``modal``  - SWE-ReX's ModalDeployment on ``task.image_name`` (needs the ``modal`` package).

SWE-ReX is async; each Sandbox owns a private event loop, so its methods are plain blocking calls (do
not call them from inside a running event loop). Commands run in one bash session with an allowlisted
environment; their output goes to a file and comes back cut to a byte limit. After a timeout every
process of the sandbox is killed and the session resynchronised (or re-created). When the shell, the
deployment or the connection dies, the sandbox restarts them, prepares its task again, and the failing
call raises ``SandboxDiedError`` or ``TransportError`` (envs/failures.py) so the caller can retry the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import posixpath
import re
import shlex
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator

from hrm_spawn.envs.config import StrictModel
from hrm_spawn.envs.failures import (
    EvaluationError,
    InfrastructureError,
    SandboxDiedError,
    TransportError,
    is_infrastructure_failure,
)
from hrm_spawn.envs.paths import data_dir
from hrm_spawn.envs.repos import RepoEnv, plain_repo_name, resolve_repo_name
from hrm_spawn.envs.results import Evaluation, TestReport
from hrm_spawn.envs.sandbox_hygiene import (
    ID_VAR,
    OWNER_FILE,
    clean_stale_sandboxes,
    kill_script,
    owner_record,
)
from hrm_spawn.envs.tasks import TaskInstance
from hrm_spawn.envs.testlog import (
    KILLED_EXIT,
    OwnFraming,
    ProfileFraming,
    evaluate_report,
    framing_for,
    test_env,
)

__all__ = [
    "CommandResult",
    "PatchApplyError",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "clean_stale_sandboxes",
]

log = logging.getLogger(__name__)

TESTBED_DIR = "/testbed"  # where SWE-smith images keep the repository
TESTBED_PYTHON = "/opt/miniconda3/envs/testbed/bin/python"
TESTBED_SANDBOXES = "/tmp/hrm-sandboxes"  # sandbox folders inside images with the /testbed layout
GIT_USER = ["-c", "user.name=hrm-spawn", "-c", "user.email=hrm-spawn@localhost", "-c", "commit.gpgsign=false"]
KILL_GRACE_S = 1.5  # the session timeout trails the in-command `timeout -s KILL` by this much
SWEREX_PS1 = "SHELLPS1PREFIX"  # the prompt SWE-ReX's BashSession waits for; the clean shell keeps it
# Variables a sandbox shell keeps from the runtime's environment (when set); nothing else gets in.
ENV_ALLOWLIST = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_WARNED = False
# Lines of `git apply` errors that name a file: "error: patch failed: a.py:3", "error: a.py: does not exist ...".
_APPLY_FILE_RES = [re.compile(r"error: patch failed: (.+?):\d+"), re.compile(r"error: (\S[^:]*): ")]
_T = TypeVar("_T")


class SandboxError(RuntimeError):
    """The sandbox cannot do what was asked (not prepared, missing repository, deployment failure)."""


class PatchApplyError(SandboxError):
    """A patch does not apply; ``path`` names the first file that failed (None if it is not a diff)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


# SWE-ReX's DockerDeployment adds these itself; passing them again would break `docker run`.
_RESERVED_DOCKER_ARGS = ("--name", "-p", "--publish", "--rm")


class DockerOptions(StrictModel):
    """SWE-ReX DockerDeployment options for the docker sandbox (``sandbox.docker.*`` in a config)."""

    docker_args: list[str] = []  # extra `docker run` arguments, e.g. ["--memory=4g", "--cpus=1"]
    startup_timeout_s: float = Field(180.0, gt=0)  # until swerex-remote answers in the container
    pull: Literal["never", "missing", "always"] = "missing"  # images built by `hrm-spawn images build`: never
    remove_container: bool = True
    platform: str | None = None
    container_runtime: Literal["docker", "podman"] = "docker"

    @field_validator("docker_args")
    @classmethod
    def _not_reserved(cls, args: list[str]) -> list[str]:
        for arg in args:
            if arg.split("=", 1)[0] in _RESERVED_DOCKER_ARGS:
                raise ValueError(
                    f"docker_args: {arg!r} is set by SWE-ReX itself (container name, port, removal: "
                    "use remove_container)"
                )
        return args


class SandboxConfig(StrictModel):
    deployment: Literal["local", "docker", "remote", "modal"] = "local"
    docker: DockerOptions = Field(default_factory=DockerOptions)  # docker only
    # local: agents that run commands chosen by a model (the llm agent) refuse a host sandbox without it
    allow_host_execution: bool = False
    host: str = "127.0.0.1"  # remote
    port: int = 8000  # remote
    token_env: str = "SWEREX_TOKEN"  # remote: name of the env var holding the server's token
    image: str | None = None  # docker/modal: default task.image_name
    command_timeout_s: float = 60.0
    test_timeout_s: float = 300.0
    # Where built repositories (data_dir()/repos layout) live inside the sandbox. Default: this host's
    # data_dir()/repos for local; SWE-smith's /testbed layout for docker, remote and modal.
    repos_dir: str | None = None
    # Bytes of a command's output kept (its head and tail, a marker line where the middle was cut).
    output_limit_bytes: int = Field(1_000_000, ge=1024)
    # The same for test runs; an evaluation whose output was cut raises EvaluationError.
    test_output_limit_bytes: int = Field(64_000_000, ge=1024)
    # Variables set in every sandbox shell, and more names kept from the runtime's environment besides
    # ENV_ALLOWLIST. Nothing else of the host's environment reaches the sandbox.
    env: dict[str, str] = Field(default_factory=dict)
    env_passthrough: list[str] = Field(default_factory=list)
    # remote: how long a request may wait beyond its own timeout (the server runs one request at a time,
    # so another client's test run may be ahead of it). Default: test_timeout_s + 60.
    remote_wait_s: float | None = Field(None, gt=0)

    @field_validator("env", "env_passthrough")
    @classmethod
    def _names_are_identifiers(cls, value: Any) -> Any:
        for name in value:
            if not _ENV_NAME_RE.match(name) or name == ID_VAR:
                raise ValueError(f"{name!r} is not a usable environment variable name")
        return value


@dataclass
class CommandResult:
    output: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    truncated: bool = False  # the output went over the limit; its middle was cut


def _recovering(reprepare: bool = True) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """A public Sandbox method that first revives a broken sandbox, and revives it when it breaks.

    ``reprepare``: prepare the last task again when reviving first (not for prepare itself).
    """

    def wrap(method: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(method)
        def call(self: Sandbox, *args: Any, **kwargs: Any) -> _T:
            if self._depth:  # a public method used inside another: the outer one recovers
                return method(self, *args, **kwargs)
            self._depth = 1
            try:
                if self._broken:
                    self._revive(reprepare)
                try:
                    return method(self, *args, **kwargs)
                except InfrastructureError:
                    # Died while up: restart now so the next job finds it ready. A failed start is
                    # not retried at once; the next call tries again.
                    if self._broken and self._deployment is not None:
                        self._try_revive()
                    raise
            finally:
                self._depth = 0

        return call

    return wrap


class Sandbox:
    """One task at a time in one SWE-ReX deployment; a context manager. See the module docstring."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        # Names this sandbox's folder, its sessions and (as HRM_SANDBOX_ID) every process it starts.
        self.id = f"hrm-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.task: TaskInstance | None = None
        self.repo_dir = ""
        self.python = ""
        self.test_env: dict[str, str] = {}
        self.test_paths: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._deployment: Any = None
        self._image: str | None = None
        self._session = ""
        self._generation = 0  # a fresh session name per (re)start: a lingering old one never clashes
        self._shell_pid = ""
        self._marker = ""
        self._root = ""  # this sandbox's folder inside the deployment: scratch files, HOME, work copies
        self._work_dir = ""  # the current task's work copy (local and repos_dir layouts)
        self._buggy = ""  # the commit every reset returns to
        self._clean_flags = "-qfdx"
        self._testbed_base = ""
        self._repo_env: RepoEnv | None = None  # the built repository in use (local layout)
        self._framing: OwnFraming | ProfileFraming = OwnFraming("python", {}, [])
        self._prepared: tuple[str, Any] | None = None  # how to prepare again after a restart
        self._broken = False  # the shell, deployment or connection died; revive before the next call
        self._depth = 0
        self._deadline: float | None = None

    @classmethod
    def from_config(cls, data: dict[str, Any] | SandboxConfig | None = None) -> Sandbox:
        """Build from a SandboxConfig or a plain mapping (e.g. a YAML section)."""
        if data is None or isinstance(data, SandboxConfig):
            return cls(data)
        from hrm_spawn.envs.config import build_config

        return cls(build_config(SandboxConfig, dict(data), source="sandbox"))

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process of the sandbox, remove its folder, end its session; safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            self._teardown()
        finally:
            self._loop.close()

    def _teardown(self) -> None:
        """Best effort, step by step: a dead shell or server must not stop the rest of the cleanup."""
        if self._deployment is None:
            return
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("kill its processes", lambda: self._kill_processes(spare="")),
            ("remove its folder", self._remove_root),
            ("close its session", self._close_session),
            ("stop the deployment", lambda: self._loop.run_until_complete(self._deployment.stop())),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # closing must not mask the caller's error
                log.warning("sandbox %s: could not %s: %s", self.id, what, exc)
        self._deployment = None
        self._work_dir = self.repo_dir = ""

    def _rpc(self, name: str, request: Any) -> Any:
        """One runtime call; a fault of the machinery marks the sandbox broken and raises its own error."""
        if self._loop.is_closed():
            raise SandboxError("the sandbox is closed")
        if self._deployment is None:
            raise SandboxError("the sandbox has no deployment yet: call prepare(task) first")
        try:
            return self._loop.run_until_complete(getattr(self._deployment.runtime, name)(request))
        except InfrastructureError:
            raise
        except Exception as exc:
            if not _is_fault(exc):
                raise
            self._broken = True
            raise self._fault(exc, name) from exc

    def _fault(self, exc: BaseException, what: str) -> InfrastructureError:
        kind = self.config.deployment
        error = TransportError if kind == "remote" and _is_transport(exc) else SandboxDiedError
        return error(f"{kind} sandbox {self.id}: {what} failed: {type(exc).__name__}: {exc}".strip())

    def _revive(self, reprepare: bool) -> None:
        """Fresh deployment and session (the old ones and their processes gone), the task prepared again."""
        prepared = self._prepared
        log.warning("sandbox %s: restarting the %s deployment", self.id, self.config.deployment)
        self._teardown()
        self._start(self._image)
        self._broken = False
        if reprepare and prepared is not None:
            kind, what = prepared
            self._do_prepare(what) if kind == "task" else self._do_prepare_clean(what)

    def _try_revive(self) -> None:
        try:
            self._revive(reprepare=True)
        except Exception as exc:  # e.g. the server is still down: the next call tries again
            log.warning("sandbox %s: restart failed, retrying on the next call: %s", self.id, exc)

    def _start(self, image: str | None) -> None:
        """Start (or restart for a new image) the deployment and its bash session."""
        if self._deployment is not None and image == self._image:
            return
        self._teardown()
        self._image, self._testbed_base = image, ""
        deployment = _make_deployment(self.config, image)
        try:
            self._loop.run_until_complete(deployment.start())
            self._deployment = deployment
            self._open_session()
        except InfrastructureError:
            self._forget(deployment)
            raise
        except Exception as exc:
            self._forget(deployment)
            if _is_fault(exc):
                self._broken = True
                raise self._fault(exc, "start") from exc
            raise SandboxError(f"could not start the {self.config.deployment} deployment: {exc}") from exc

    def _forget(self, deployment: Any) -> None:
        """After a failed start: stop what did start (a container), and hold no deployment."""
        self._deployment = None
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(deployment.stop())

    def _open_session(self) -> None:
        """A new bash session, re-executed with only the allowlisted environment and a scratch HOME."""
        from swerex.runtime.abstract import BashAction, CreateBashSessionRequest

        self._generation += 1
        self._session = f"{self.id}-{self._generation}"
        self._root = self._root_dir()
        self._rpc("create_session", CreateBashSessionRequest(session=self._session, startup_timeout=10.0))
        # exec keeps the pid, so the shell stays the leader of the session SWE-ReX's pty gave it.
        self._rpc(
            "run_in_session",
            BashAction(command=self._clean_shell_line(), session=self._session, timeout=10.0, check="ignore"),
        )
        self._marker = f"__hrm_rc_{uuid.uuid4().hex[:12]}__"
        output, _ = self._pty_run(f'echo "$$:${{{ID_VAR}:-}}"', 10.0)
        pid, _, sandbox_id = (output.strip().splitlines() or [""])[-1].strip().partition(":")
        if sandbox_id != self.id:
            raise SandboxError(f"could not start a clean shell in {self._root}: {output[-500:]!r}")
        self._shell_pid = pid
        self._write(posixpath.join(self._root, "run.sh"), self._wrapper_script())
        self._write(posixpath.join(self._root, OWNER_FILE), json.dumps({**owner_record(), "id": self.id}))
        if self.repo_dir:
            self._sh(f"cd {shlex.quote(self.repo_dir)}")

    def _root_dir(self) -> str:
        if self._built_layout:
            base = posixpath.join(posixpath.dirname(self._repos_dir().rstrip("/")), "sandboxes")
        else:
            base = TESTBED_SANDBOXES
        return posixpath.join(base, self.id)

    def _clean_shell_line(self) -> str:
        """``exec env -i`` bash with the allowlist (values from the runtime's own environment)."""
        keep = dict.fromkeys([*ENV_ALLOWLIST, *self.config.env_passthrough])
        words = [f'${{{name}+"{name}=${name}"}}' for name in keep]
        home = posixpath.join(self._root, "home")
        fixed = {
            "HOME": home,
            ID_VAR: self.id,
            "TERM": "dumb",
            "HISTFILE": "/dev/null",
            **self.config.env,
            "PS1": SWEREX_PS1,
            "PS2": "",
            "PS0": "",
        }
        words += [shlex.quote(f"{k}={v}") for k, v in fixed.items()]
        return f'mkdir -p {shlex.quote(home)} && exec env -i {" ".join(words)} "$BASH" --norc --noprofile'

    def _wrapper_script(self) -> str:
        """Sourced for every command: output to a file, cut to ``$__hrm_limit`` bytes, status behind the marker.

        Output never crosses the terminal (pexpect's matching is quadratic in it); wc, head and tail are
        linear. The command is sourced, so its cd and variables persist in the session.
        """
        out = shlex.quote(posixpath.join(self._root, "output.txt"))
        cmd = shlex.quote(posixpath.join(self._root, "command.sh"))
        return (
            f"{{ source {cmd}; }} >{out} 2>&1 </dev/null\n"
            "__hrm_rc=$?\n"
            f"__hrm_n=$(wc -c <{out})\n"
            f"{_cut_snippet(out, '$__hrm_n', '$__hrm_limit')}\n"
            f'echo "{self._marker}$__hrm_rc:$__hrm_n"\n'
            "unset __hrm_n __hrm_limit\n"
            "return $__hrm_rc\n"
        )

    def _close_session(self) -> None:
        from swerex.runtime.abstract import CloseBashSessionRequest

        self._rpc("close_session", CloseBashSessionRequest(session=self._session))

    def _remove_root(self) -> None:
        from swerex.runtime.abstract import Command

        if self._root:
            self._rpc("execute", Command(command=["rm", "-rf", self._root], shell=False, timeout=120))

    def _kill_processes(self, spare: str) -> None:
        """From outside the session: SIGKILL every process of this sandbox except ``spare`` (a pid or "")."""
        from swerex.runtime.abstract import Command

        if self._shell_pid:
            script = kill_script(self.id, self._shell_pid, spare)
            self._rpc("execute", Command(command=script, shell=True, timeout=30))

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Within the block, ``run`` and ``run_tests`` never go past ``seconds`` from now.

        A command is given at most the time left and killed (with everything it started) when it runs
        over, so an agent's sandbox time exceeds its budget by at most the kill latency (docs/sandbox.md).
        Once the time is spent, commands return a timed-out result without running.
        """
        outer = self._deadline
        mine = time.monotonic() + seconds
        self._deadline = mine if outer is None else min(outer, mine)
        try:
            yield
        finally:
            self._deadline = outer

    # -- preparing a task --------------------------------------------------------------------------

    @property
    def _built_layout(self) -> bool:
        return self.config.deployment == "local" or self.config.repos_dir is not None

    @_recovering(reprepare=False)
    def prepare(self, task: TaskInstance) -> None:
        """Bring ``task``'s repository to its buggy state (the task patch applied and committed)."""
        self._do_prepare(task)

    def _do_prepare(self, task: TaskInstance) -> None:
        if task.replay_only:
            raise SandboxError(
                f"task {task.instance_id} is known only by id (replay_only): it cannot run live"
            )
        image = None if self._built_layout else (self.config.image or task.image_name or _profile_image(task))
        if not self._built_layout and not image:
            raise SandboxError(
                f"task {task.instance_id}: no image_name and no SandboxConfig.image for "
                f"the {self.config.deployment} deployment"
            )
        self._prepared = ("task", task)
        self.task = None
        self._start(image)
        if self._built_layout:
            self._checkout_built(task.repo, task.instance_id, task.base_commit)
        else:
            self._checkout_testbed()
        # SWE-smith rows are judged by their repository's profile; tasks built here by this project's framing
        self._framing = framing_for(task, self.python, self.test_env, self._repo_env, self._built_layout)
        try:
            self._apply_now(task.patch)
        except PatchApplyError as exc:
            raise PatchApplyError(
                f"task {task.instance_id}: its bug patch does not apply: {exc}", exc.path
            ) from exc
        commit = f"git {' '.join(GIT_USER)} commit -q --no-verify --allow-empty -m hrm-spawn-buggy"
        self._sh(f"git add -A && {commit}", what="commit the buggy state")
        self._buggy = self._sh("git rev-parse HEAD").strip().splitlines()[-1]
        self.task = task
        if task.test_run_s is None:  # SWE-smith rows do not carry the cost unit: measure it once
            task.test_run_s = self._measure_test_run_s()

    def _measure_test_run_s(self) -> float:
        """Wall seconds of one grading run on the buggy state (the built repository's own figure if known)."""
        if self._repo_env is not None and self._repo_env.test_run_s > 0:
            return self._repo_env.test_run_s
        timeout = self.config.test_timeout_s
        result = self.run(self._test_line(None, timeout), timeout_s=timeout + KILL_GRACE_S)
        return round(result.duration_s, 3)

    @_recovering(reprepare=False)
    def prepare_clean(self, repo_name: str) -> None:
        """The built repository ``repo_name`` at its base commit, no bug (for building tasks)."""
        self._do_prepare_clean(repo_name)

    def _do_prepare_clean(self, repo_name: str) -> None:
        if not self._built_layout:
            raise SandboxError("prepare_clean needs a built repository (local, or repos_dir set)")
        self._prepared = ("clean", repo_name)
        self.task = None
        self._start(None)
        self._checkout_built(repo_name, f"clean-{repo_name}", None)
        self._framing = OwnFraming(self.python, self.test_env, list(self.test_paths))
        self._buggy = self._sh("git rev-parse HEAD").strip().splitlines()[-1]

    def _repos_dir(self) -> str:
        return self.config.repos_dir or str(data_dir() / "repos")

    def _checkout_built(self, repo_name: str, label: str, base_commit: str | None) -> None:
        try:  # swesmith/<owner>__<name>.<sha8> -> the built repository's directory (never a path outside)
            repo_name = plain_repo_name(repo_name)
            if self.config.deployment == "local":
                repo_name = resolve_repo_name(repo_name, Path(self._repos_dir()))
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        root = posixpath.join(self._repos_dir(), repo_name)
        repo = self._load_repo(root, repo_name)
        self._discard_work_dir()
        work = posixpath.join(self._root, re.sub(r"[^A-Za-z0-9._-]", "_", label))
        repo_dir = posixpath.join(work, "repo")
        checkout = posixpath.join(root, "checkout")
        self._sh(
            f"rm -rf {shlex.quote(work)} && mkdir -p {shlex.quote(work)} && "
            f"git clone -q --shared {shlex.quote(checkout)} {shlex.quote(repo_dir)}",
            what=f"clone {checkout}",
        )
        self._work_dir, self._clean_flags = work, "-qfdx"
        self._enter_repo(repo_dir)
        self._repo_env = repo
        commit = repo.resolve_commit(base_commit)  # a row's commit of the copied source -> the checkout's
        if commit:
            self._sh(f"git checkout -q {shlex.quote(commit)}", what=f"check out base commit {commit}")
        self.python = repo.python
        self.test_paths = list(repo.test_paths)
        self.test_env = test_env(repo.pythonpath, repo_dir)

    def _load_repo(self, root: str, name: str) -> RepoEnv:
        from swerex.runtime.abstract import ReadFileRequest

        path = posixpath.join(root, "repo.json")
        try:
            text = self._rpc("read_file", ReadFileRequest(path=path)).content
        except InfrastructureError:
            raise
        except Exception as exc:
            raise SandboxError(
                f"repository {name!r} is not built in the sandbox: cannot read {path} ({exc}); "
                "build it with `hrm-spawn tasks build`, or use the docker/remote sandbox"
            ) from None
        try:
            data = json.loads(text)
            data["root"] = root
            return RepoEnv.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise SandboxError(f"{path}: not a valid repo.json: {exc}") from None

    def _checkout_testbed(self) -> None:
        self._repo_env = None
        self._discard_work_dir()
        self._clean_flags = "-qfd"
        self._enter_repo(TESTBED_DIR)
        if not self._testbed_base:  # the image's own commit; later tasks in this container start there too
            self._testbed_base = self._sh("git rev-parse HEAD").strip().splitlines()[-1]
        # Keep ignored files: SWE-smith images hold the editable install's metadata among them.
        self._sh(f"git reset -q --hard {self._testbed_base} && git clean -qfd", what="clean /testbed")
        self.python = TESTBED_PYTHON
        self.test_paths = []
        self.test_env = test_env([], TESTBED_DIR)

    def _enter_repo(self, repo_dir: str) -> None:
        self.repo_dir = repo_dir
        self._sh(f"cd {shlex.quote(repo_dir)}")

    def _discard_work_dir(self) -> None:
        if self._work_dir:
            self._sh(f"cd {shlex.quote(self._root)} && rm -rf {shlex.quote(self._work_dir)}")
        self._work_dir, self.repo_dir, self.task = "", "", None

    # -- working on the repository -----------------------------------------------------------------

    def _require_repo(self) -> None:
        if not self.repo_dir:
            raise SandboxError("the sandbox has no repository yet: call prepare(task) first")

    @_recovering()
    def reset(self) -> None:
        """Back to the buggy state: every process the agent left killed, tracked files restored,
        untracked and ignored files removed."""
        self._require_repo()
        self._sh(f"{kill_script(self.id, self._shell_pid, '$$')}; {self._reset_command()}", what="reset")

    @property
    def _git(self) -> str:
        # Internal commands name the repository: the agent may have cd'ed elsewhere in the session.
        return f"git -C {shlex.quote(self.repo_dir)}"

    def _reset_command(self) -> str:
        return f"{self._git} reset -q --hard {self._buggy} && {self._git} clean {self._clean_flags}"

    @_recovering()
    def apply_patch(self, patch: str) -> None:
        """Apply a unified diff to the working tree; PatchApplyError names the file that failed."""
        self._apply_now(patch)

    def _apply_now(self, patch: str) -> None:
        self._require_repo()
        if patch.strip():
            result = self._run(self._apply_command(patch), self.config.command_timeout_s)
            if result.exit_code != 0:
                raise PatchApplyError(*_describe_apply_error(result.output))

    def _apply_command(self, patch: str) -> str:
        path = self._scratch("candidate.patch", patch if patch.endswith("\n") else patch + "\n")
        return f"{self._git} apply --whitespace=nowarn {shlex.quote(path)}"

    @_recovering()
    def diff(self) -> str:
        """The working tree (untracked files included) against the buggy state, as a patch."""
        self._require_repo()
        out = posixpath.join(self._root, "diff.patch")
        # Stage everything so new files show, diff the index, then restore the index.
        git = self._git
        self._sh(
            f"{git} add -A && {git} diff --cached --no-color --no-ext-diff {self._buggy} > {shlex.quote(out)}; "
            f"rc=$?; {git} reset -q; (exit $rc)",
            what="diff",
        )
        return self._read_abs(out)

    @_recovering()
    def read_file(self, path: str) -> str:
        return self._read_abs(self._repo_path(path))

    @_recovering()
    def write_file(self, path: str, text: str) -> None:
        self._write(self._repo_path(path), text)

    def _repo_path(self, path: str) -> str:
        self._require_repo()
        norm = posixpath.normpath(path)
        if posixpath.isabs(path) or norm == ".." or norm.startswith("../"):
            raise ValueError(f"path {path!r} is not inside the repository (give a path relative to it)")
        return posixpath.join(self.repo_dir, norm)

    def _read_abs(self, path: str, errors: str = "surrogateescape") -> str:
        from swerex.runtime.abstract import ReadFileRequest

        return self._rpc("read_file", ReadFileRequest(path=path, encoding="utf-8", errors=errors)).content

    def _write(self, path: str, text: str) -> None:
        from swerex.runtime.abstract import WriteFileRequest

        self._rpc("write_file", WriteFileRequest(path=path, content=text))

    def _scratch(self, name: str, text: str) -> str:
        path = posixpath.join(self._root, name)
        self._write(path, text)
        return path

    # -- commands and tests ------------------------------------------------------------------------

    @_recovering()
    def run(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Run a shell command in the session (cwd and variables persist); never raises on failure or timeout.

        The command is written to a scratch file and sourced with its output going to a file, so any text
        (several lines, heredocs, long lines) reaches bash intact and output of any size costs linear
        time; at most ``output_limit_bytes`` come back. Within :meth:`deadline` the timeout is cut to the
        time left. Raises SandboxDiedError/TransportError (after restarting) when the shell, deployment
        or connection died, e.g. on ``exit``.
        """
        timeout = timeout_s if timeout_s is not None else self.config.command_timeout_s
        left = self._time_left()
        if left is not None and left <= 0:
            return CommandResult("the sandbox time budget is spent", None, True, 0.0)
        return self._run(command, timeout if left is None else min(timeout, left))

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _run(self, command: str, timeout: float, limit: int | None = None) -> CommandResult:
        from swerex.exceptions import BashIncorrectSyntaxError, CommandTimeoutError

        if self._deployment is None:
            raise SandboxError("the sandbox has no deployment yet: call prepare(task) first")
        limit = limit or self.config.output_limit_bytes
        self._scratch("command.sh", command)
        start = time.perf_counter()
        try:
            pty, status = self._pty_run(
                f"__hrm_limit={limit}; source {shlex.quote(self._root)}/run.sh", timeout
            )
        except CommandTimeoutError:
            self._recover()
            output, truncated = self._read_output(limit, cut=True)
            return CommandResult(output, None, True, time.perf_counter() - start, truncated)
        except BashIncorrectSyntaxError as exc:
            return CommandResult(f"bash syntax error: {exc}", 2, False, time.perf_counter() - start)
        if status is None:  # lost sync with the shell (already resynchronised or restarted)
            return CommandResult(pty, None, False, time.perf_counter() - start)
        exit_code, _, size = status.partition(":")
        output, _ = self._read_output(limit, cut=False)
        return CommandResult(
            output, int(exit_code), False, time.perf_counter() - start, int(size or 0) > limit
        )

    def _read_output(self, limit: int, cut: bool) -> tuple[str, bool]:
        """The command's output file (cut to ``limit`` first when the wrapper did not get to it)."""
        from swerex.runtime.abstract import Command

        out = posixpath.join(self._root, "output.txt")
        truncated = False
        if cut:
            quoted = shlex.quote(out)
            script = f"n=$(wc -c <{quoted}) || exit 0; {_cut_snippet(quoted, '$n', str(limit))}; echo $n"
            size = self._rpc("execute", Command(command=script, shell=True, timeout=60)).stdout.strip()
            truncated = size.isdigit() and int(size) > limit
        try:
            text = self._read_abs(out, errors="backslashreplace")
        except InfrastructureError:
            raise
        except Exception:  # no output file (the command never started)
            text = ""
        return text.strip("\n"), truncated

    def _pty_run(self, line: str, timeout: float) -> tuple[str, str | None]:
        """One round trip: ``line`` then its exit status behind a marker only this session knows.

        Returns the terminal output before the marker and the status text after it ("0", or "0:1234" from
        the wrapper, which adds the output's size); None when the marker is missing, i.e. the session lost
        sync: it is then resynchronised or restarted. SWE-ReX's own exit-status probe (check="silent") needs
        a second round trip with 0.1-1 s deadlines that a loaded machine misses; check="ignore" plus the
        marker avoids both.
        """
        from swerex.runtime.abstract import BashAction

        action = BashAction(
            command=f"{line}\necho {self._marker}$?", session=self._session, timeout=timeout, check="ignore"
        )
        output = self._rpc("run_in_session", action).output.replace("\r\n", "\n")
        head, found, tail = output.partition(self._marker)  # the wrapper's "<rc>:<size>" comes first
        match = re.match(r"\d+(?::\d+)?", tail)
        if not found or not match:
            if not self._resync():
                log.warning("sandbox %s: lost sync with the bash session; starting a new one", self.id)
                self._restart_session()
            return output.strip("\n"), None
        return head.strip("\n"), match.group(0)

    def _sh(self, command: str, what: str = "") -> str:
        """Run a setup command that must succeed; SandboxError with its output otherwise."""
        result = self._run(command, self.config.command_timeout_s)
        if result.exit_code != 0:
            raise SandboxError(
                f"could not {what or command!r} in {self.repo_dir or 'the sandbox'} "
                f"(exit {result.exit_code}): {result.output.strip()[-2000:]}"
            )
        return result.output

    def _recover(self) -> None:
        """After a timeout: kill every process of the sandbox but the shell, then get the prompt back.

        Killing comes first: tests run under `timeout` in their own process group, which the terminal's
        Ctrl-C does not reach. The shell then finishes the timed-out line by itself; a shell that still
        does not answer (busy in a loop of builtins) is replaced.
        """
        self._kill_processes(spare=self._shell_pid)
        if not self._resync():
            log.warning("sandbox %s: the shell does not answer after a timeout; starting a new one", self.id)
            self._restart_session()

    def _resync(self, attempts: int = 4) -> bool:
        """Use up the stale prompts a timed-out or garbled line left, until an echo of a fresh token returns.

        Each SWE-ReX action reads up to the next prompt, and each line sent prints one, so echoes alone never
        catch up. ``PS1=`` does: it reads one stale prompt and its own prompt prints nothing; the next line
        restores the prompt and echoes the token. Timing-free, except the short wait when nothing is stale.
        """
        from swerex.exceptions import CommandTimeoutError
        from swerex.runtime.abstract import BashAction

        def send(command: str, timeout: float) -> str:
            action = BashAction(command=command, session=self._session, timeout=timeout, check="ignore")
            return self._rpc("run_in_session", action).output

        for _ in range(attempts):
            with contextlib.suppress(CommandTimeoutError):  # nothing stale: the shell ran it silently
                send("PS1=", 1.0)
            token = f"__hrm_sync_{uuid.uuid4().hex[:12]}__"
            try:
                if token in send(f"PS1={SWEREX_PS1}; echo {token}", 2.0):
                    return True
            except CommandTimeoutError:  # busy: our lines wait in the terminal
                return False
        return False

    def _restart_session(self) -> None:
        for what, step in (
            ("kill the old shell", lambda: self._kill_processes(spare="")),
            ("close the old session", self._close_session),
        ):
            try:
                step()
            except InfrastructureError:
                raise
            except Exception as exc:  # already dead is fine
                log.debug("sandbox %s: could not %s: %s", self.id, what, exc)
        self._open_session()

    @_recovering()
    def run_tests(self, test_ids: list[str] | None = None, timeout_s: float | None = None) -> TestReport:
        """Run the given tests (default: the whole suite) and parse per-test results."""
        self._require_repo()
        timeout = timeout_s if timeout_s is not None else self.config.test_timeout_s
        left = self._time_left()
        if left is not None and left <= 0:
            return self._report(CommandResult("the sandbox time budget is spent", None, True, 0.0))
        if left is not None:  # pytest's own `timeout -s KILL` ends the run when the budget does
            timeout = max(0.1, min(timeout, left))
        targets = list(test_ids) if test_ids else self.test_paths
        result = self._run(
            self._test_line(targets, timeout), timeout + KILL_GRACE_S, self.config.test_output_limit_bytes
        )
        return self._report(result)

    def _test_line(self, targets: list[str] | None, timeout: float) -> str:
        # targets None: the grading run. A subshell, so the session's cwd and variables stay as they were.
        return self._framing.command(self.repo_dir, targets, timeout)

    def _report(self, result: CommandResult) -> TestReport:
        timed_out = result.timed_out or result.exit_code == KILLED_EXIT
        return self._framing.parse(result.output, result.duration_s, timed_out)

    @_recovering()
    def evaluate(self, patch: str) -> Evaluation:
        """Judge ``patch`` against the buggy repository on FAIL_TO_PASS + PASS_TO_PASS; resets before and after.

        One session round trip: reset, apply, run, reset (the sandbox overhead is mostly round trips).
        EvaluationError when the test output went over ``test_output_limit_bytes`` (results were cut).
        """
        if self.task is None:
            raise SandboxError("evaluate needs a prepared task: call prepare(task) first")
        f2p, p2p = list(self.task.FAIL_TO_PASS), list(self.task.PASS_TO_PASS)
        timeout = self.config.test_timeout_s
        start = time.perf_counter()
        ready = self._reset_command()
        if patch.strip():
            ready += f" && {self._apply_command(patch)}"
        failed = f"__hrm_not_applied_{uuid.uuid4().hex[:8]}__"
        script = (
            f"if {ready}; then {self._test_line(None, timeout)}; rc=$?; "
            f"else rc=1; echo {failed}; fi; {self._reset_command()}; (exit $rc)"
        )
        result = self._run(script, timeout + KILL_GRACE_S, self.config.test_output_limit_bytes)
        if result.truncated:
            raise EvaluationError(
                f"task {self.task.instance_id}: the test output went over test_output_limit_bytes "
                f"({self.config.test_output_limit_bytes}) and was cut; per-test results would be lost"
            )
        if failed in result.output:
            message, _ = _describe_apply_error(result.output.split(failed)[0])
            return Evaluation(
                0, len(f2p), 0, len(p2p), applied=False, error=message, duration_s=time.perf_counter() - start
            )
        evaluation = evaluate_report(self._report(result), f2p, p2p)
        evaluation.duration_s = time.perf_counter() - start
        return evaluation


def _profile_image(task: TaskInstance) -> str | None:
    """The image of the task's SWE-smith profile, when the row does not name one."""
    from hrm_spawn.envs.swesmith_py import profile_for

    profile = profile_for(task.repo)
    return profile.image_name if profile is not None else None


def _cut_snippet(out: str, size: str, limit: str) -> str:
    """sh: when ``size`` > ``limit``, keep the file's first and last limit/2 bytes around a marker line."""
    return (
        f'if [ "{size}" -gt "{limit}" ]; then __hrm_h=$(({limit} / 2)); '
        f'{{ head -c "$__hrm_h" {out}; printf "\\n[... %s bytes cut by the sandbox ...]\\n" $(({size} - {limit})); '
        f"tail -c $(({limit} - __hrm_h)) {out}; }} >{out}.cut && mv -f {out}.cut {out}; unset __hrm_h; fi"
    )


def _is_fault(exc: BaseException) -> bool:
    """A fault of the shell, deployment or connection (a client timeout included), not of the command."""
    from swerex.exceptions import SwerexException

    if is_infrastructure_failure(exc):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.EBADF):  # a pty whose shell is gone
        return True
    return isinstance(exc, asyncio.TimeoutError | TimeoutError) and not isinstance(exc, SwerexException)


def _is_transport(exc: BaseException) -> bool:
    """The connection failed (as opposed to the shell dying on the far side)."""
    module = type(exc).__module__
    return (
        module.startswith("aiohttp")
        or isinstance(exc, ConnectionError | asyncio.TimeoutError | TimeoutError)
        or type(exc).__name__ == "SessionDoesNotExistError"
    )


def _describe_apply_error(output: str) -> tuple[str, str | None]:
    text = output.strip()
    for pattern in _APPLY_FILE_RES:
        match = pattern.search(text)
        if match:
            return f"patch does not apply to {match.group(1)}: {text[-1500:]}", match.group(1)
    return f"patch does not apply (not a usable diff?): {text[-1500:]}", None


def _warn_host_execution() -> None:
    global _HOST_WARNED
    if not _HOST_WARNED:
        _HOST_WARNED = True
        warnings.warn(
            "the local sandbox runs repository code and its tests on this host, as this user; "
            "use the docker or remote sandbox for task sets you did not build yourself",
            RuntimeWarning,
            stacklevel=6,  # the caller of prepare()
        )


class HostExecutionError(SandboxError, InfrastructureError):
    """An agent that runs model-chosen commands was given a sandbox on this host without the opt-in.

    A refusal of the setup, not something the agent did: never stored as an outcome."""

    kind = "host_execution_refused"


def require_isolation(sandbox: Sandbox, who: str) -> None:
    """Refuse to let ``who`` run commands on this host unless the config says so explicitly.

    Where an agent meets its sandbox (the start of ``run``): a model's shell commands run on the host,
    as this user, in the local sandbox, so the llm agent needs docker/remote/modal or the opt-in.
    """
    config = sandbox.config
    if config.deployment == "local" and not config.allow_host_execution:
        raise HostExecutionError(
            f"{who} runs model-chosen shell commands and the sandbox is 'local' (this host, as this user): "
            "use sandbox.deployment=docker (see `hrm-spawn images build`), or opt in with "
            "sandbox.allow_host_execution=true"
        )


def _make_deployment(config: SandboxConfig, image: str | None) -> Any:
    kind = config.deployment
    if kind == "local":
        from swerex.deployment.local import LocalDeployment

        _warn_host_execution()
        return LocalDeployment()
    if kind == "docker":
        return _docker_deployment(config.docker, image or "python:3.11")
    if kind == "remote":
        from hrm_spawn.envs.sandbox_remote import SharedRemoteDeployment, remote_url

        token = os.environ.get(config.token_env, "")
        if not token.strip():
            raise SandboxError(
                f"remote sandbox: the env var {config.token_env} (token_env) holding the "
                f"server's auth token is not set or empty; refusing to connect without a token"
            )
        wait_s = config.remote_wait_s or config.test_timeout_s + 60.0
        return SharedRemoteDeployment(remote_url(config.host), config.port, token, wait_s)
    if kind == "modal":
        try:
            from swerex.deployment.modal import ModalDeployment
        except ImportError as exc:
            raise SandboxError(
                f"the modal sandbox needs the `modal` package (pip install modal): {exc}"
            ) from None
        return ModalDeployment(image=image or "python:3.11")
    raise SandboxError(f"unknown deployment {kind!r}")


def _docker_deployment(options: DockerOptions, image: str) -> Any:
    import subprocess

    from swerex.deployment.docker import DockerDeployment

    probe = [options.container_runtime, "image", "inspect", image]
    if options.pull == "never" and subprocess.run(probe, capture_output=True).returncode != 0:
        raise SandboxError(
            f"docker image {image!r} is not on this machine and sandbox.docker.pull is 'never': "
            "build it with `hrm-spawn images build --repo REPO`, or set pull to 'missing'"
        )
    kwargs = options.model_dump(exclude={"startup_timeout_s"})
    return DockerDeployment(image=image, startup_timeout=options.startup_timeout_s, **kwargs)
