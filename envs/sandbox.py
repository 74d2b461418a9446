"""A Sandbox over SWE-ReX deployments: prepare a task once, reset with git, apply, run tests, evaluate.

Deployments (``SandboxConfig.deployment``):

* ``local``  - SWE-ReX's LocalDeployment: commands run **on this host**, as this user. The repository
  comes from ``data_dir()/repos/<task.repo>`` (built by ``hrm-spawn tasks build``) and each sandbox works
  in its own ``git clone --shared`` under ``data_dir()/sandboxes/``.
* ``docker`` - SWE-ReX's DockerDeployment on ``task.image_name`` (SWE-smith images: repo at /testbed,
  conda env ``testbed``).
* ``remote`` - a ``swerex-remote`` server at host:port, token read from the env var ``token_env``.
  Without ``repos_dir`` the server is assumed to run in a SWE-smith image (/testbed layout).
* ``modal``  - SWE-ReX's ModalDeployment on ``task.image_name`` (needs the ``modal`` package).

SWE-ReX is async; each Sandbox owns a private event loop, so its methods are plain blocking calls (do
not call them from inside a running event loop). Commands run in one bash session; after a timeout the
session is interrupted, every process left under it is killed, and the session is re-created if needed,
so the next command works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
import re
import shlex
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from hrm_spawn.envs.config import StrictModel
from hrm_spawn.envs.failures import InfrastructureError
from hrm_spawn.envs.paths import data_dir
from hrm_spawn.envs.repos import RepoEnv, plain_repo_name, resolve_repo_name
from hrm_spawn.envs.results import Evaluation, TestReport
from hrm_spawn.envs.tasks import TaskInstance
from hrm_spawn.envs.testlog import (
    KILLED_EXIT,
    OwnFraming,
    ProfileFraming,
    evaluate_report,
    framing_for,
    test_env,
)

log = logging.getLogger(__name__)

SESSION = "hrm"
TESTBED_DIR = "/testbed"  # where SWE-smith images keep the repository
TESTBED_PYTHON = "/opt/miniconda3/envs/testbed/bin/python"
GIT_USER = ["-c", "user.name=hrm-spawn", "-c", "user.email=hrm-spawn@localhost", "-c", "commit.gpgsign=false"]
KILL_GRACE_S = 1.5  # the session timeout trails the in-command `timeout -s KILL` by this much
_HOST_WARNED = False
# Lines of `git apply` errors that name a file: "error: patch failed: a.py:3", "error: a.py: does not exist ...".
_APPLY_FILE_RES = [re.compile(r"error: patch failed: (.+?):\d+"), re.compile(r"error: (\S[^:]*): ")]


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


@dataclass
class CommandResult:
    output: str
    exit_code: int | None
    timed_out: bool
    duration_s: float


class Sandbox:
    """One task at a time in one SWE-ReX deployment; a context manager. See the module docstring."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.task: TaskInstance | None = None
        self.repo_dir = ""
        self.python = ""
        self.test_env: dict[str, str] = {}
        self.test_paths: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._deployment: Any = None
        self._image: str | None = None
        self._shell_pid = ""
        self._marker = ""
        self._work_dir = ""  # scratch dir inside the sandbox (patch files, diffs); outside the repo
        self._owns_work_dir = False
        self._buggy = ""  # the commit every reset returns to
        self._clean_flags = "-qfdx"
        self._testbed_base = ""
        self._repo_env: RepoEnv | None = None  # the built repository in use (local layout)
        self._framing: OwnFraming | ProfileFraming = OwnFraming("python", {}, [])

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
        """Remove this sandbox's work copy and stop the deployment; safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            if self._deployment is not None:
                self._discard_work_dir()
                self._call(self._deployment.stop())
        except Exception as exc:  # closing must not mask the caller's error
            log.warning("sandbox close: %s", exc)
        finally:
            self._deployment = None
            self._loop.close()

    def _call(self, coro: Any) -> Any:
        if self._loop.is_closed():
            coro.close()
            raise SandboxError("the sandbox is closed")
        return self._loop.run_until_complete(coro)

    def _start(self, image: str | None) -> None:
        """Start (or restart for a new image) the deployment and its bash session."""
        if self._deployment is not None and image == self._image:
            return
        if self._deployment is not None:
            self._discard_work_dir()
            self._call(self._deployment.stop())
        self._deployment = _make_deployment(self.config, image)
        self._image, self._testbed_base = image, ""
        try:
            self._call(self._deployment.start())
            self._open_session()
        except Exception as exc:
            self._deployment = None
            raise SandboxError(f"could not start the {self.config.deployment} deployment: {exc}") from exc

    def _open_session(self) -> None:
        from swerex.runtime.abstract import CreateBashSessionRequest

        runtime = self._deployment.runtime
        self._call(runtime.create_session(CreateBashSessionRequest(session=SESSION, startup_timeout=10.0)))
        self._marker = f"__hrm_rc_{uuid.uuid4().hex[:12]}__"
        output, _ = self._session_run("echo $$", 10.0, restart=False)
        self._shell_pid = output.strip().splitlines()[-1].strip()
        if self.repo_dir:
            self._sh(f"cd {shlex.quote(self.repo_dir)}")

    # -- preparing a task --------------------------------------------------------------------------

    @property
    def _built_layout(self) -> bool:
        return self.config.deployment == "local" or self.config.repos_dir is not None

    def prepare(self, task: TaskInstance) -> None:
        """Bring ``task``'s repository to its buggy state (the task patch applied and committed)."""
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
        self._start(image)
        if self._built_layout:
            self._checkout_built(task.repo, task.instance_id, task.base_commit)
        else:
            self._checkout_testbed()
        self.task = None
        # SWE-smith rows are judged by their repository's profile; tasks built here by this project's framing
        self._framing = framing_for(task, self.python, self.test_env, self._repo_env, self._built_layout)
        try:
            self.apply_patch(task.patch)
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

    def prepare_clean(self, repo_name: str) -> None:
        """The built repository ``repo_name`` at its base commit, no bug (for building tasks)."""
        self._start(None)
        if not self._built_layout:
            raise SandboxError("prepare_clean needs a built repository (local, or repos_dir set)")
        self._checkout_built(repo_name, f"clean-{repo_name}", None)
        self._framing = OwnFraming(self.python, self.test_env, list(self.test_paths))
        self._buggy = self._sh("git rev-parse HEAD").strip().splitlines()[-1]
        self.task = None

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
        work = posixpath.join(
            posixpath.dirname(self._repos_dir().rstrip("/")), "sandboxes", f"{label}-{uuid.uuid4().hex[:8]}"
        )
        repo_dir = posixpath.join(work, "repo")
        checkout = posixpath.join(root, "checkout")
        self._sh(
            f"mkdir -p {shlex.quote(work)} && git clone -q --shared {shlex.quote(checkout)} "
            f"{shlex.quote(repo_dir)}",
            what=f"clone {checkout}",
        )
        self._work_dir, self._owns_work_dir, self._clean_flags = work, True, "-qfdx"
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
            text = self._call(self._deployment.runtime.read_file(ReadFileRequest(path=path))).content
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
        self._work_dir, self._owns_work_dir, self._clean_flags = "/tmp/hrm-spawn", False, "-qfd"
        self._sh(f"mkdir -p {self._work_dir}")
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
        if self._owns_work_dir and self._work_dir:
            self._sh(f"cd / && rm -rf {shlex.quote(self._work_dir)}")
        self._work_dir, self._owns_work_dir, self.repo_dir, self.task = "", False, "", None

    # -- working on the repository -----------------------------------------------------------------

    def _require_repo(self) -> None:
        if not self.repo_dir:
            raise SandboxError("the sandbox has no repository yet: call prepare(task) first")

    def reset(self) -> None:
        """Back to the buggy state: tracked files restored, untracked and ignored files removed."""
        self._require_repo()
        self._sh(self._reset_command(), what="reset")

    @property
    def _git(self) -> str:
        # Internal commands name the repository: the agent may have cd'ed elsewhere in the session.
        return f"git -C {shlex.quote(self.repo_dir)}"

    def _reset_command(self) -> str:
        return f"{self._git} reset -q --hard {self._buggy} && {self._git} clean {self._clean_flags}"

    def apply_patch(self, patch: str) -> None:
        """Apply a unified diff to the working tree; PatchApplyError names the file that failed."""
        self._require_repo()
        if patch.strip():
            self._apply(patch)

    def _apply(self, patch: str) -> None:
        result = self.run(self._apply_command(patch))
        if result.exit_code != 0:
            raise PatchApplyError(*_describe_apply_error(result.output))

    def _apply_command(self, patch: str) -> str:
        path = self._scratch("candidate.patch", patch if patch.endswith("\n") else patch + "\n")
        return f"{self._git} apply --whitespace=nowarn {shlex.quote(path)}"

    def diff(self) -> str:
        """The working tree (untracked files included) against the buggy state, as a patch."""
        self._require_repo()
        out = posixpath.join(self._work_dir, "diff.patch")
        # Stage everything so new files show, diff the index, then restore the index.
        git = self._git
        self._sh(
            f"{git} add -A && {git} diff --cached --no-color --no-ext-diff {self._buggy} > {shlex.quote(out)}; "
            f"rc=$?; {git} reset -q; (exit $rc)",
            what="diff",
        )
        return self._read_abs(out)

    def read_file(self, path: str) -> str:
        return self._read_abs(self._repo_path(path))

    def write_file(self, path: str, text: str) -> None:
        from swerex.runtime.abstract import WriteFileRequest

        self._call(
            self._deployment.runtime.write_file(WriteFileRequest(path=self._repo_path(path), content=text))
        )

    def _repo_path(self, path: str) -> str:
        self._require_repo()
        norm = posixpath.normpath(path)
        if posixpath.isabs(path) or norm == ".." or norm.startswith("../"):
            raise ValueError(f"path {path!r} is not inside the repository (give a path relative to it)")
        return posixpath.join(self.repo_dir, norm)

    def _read_abs(self, path: str) -> str:
        from swerex.runtime.abstract import ReadFileRequest

        request = ReadFileRequest(path=path, encoding="utf-8", errors="surrogateescape")
        return self._call(self._deployment.runtime.read_file(request)).content

    def _scratch(self, name: str, text: str) -> str:
        from swerex.runtime.abstract import WriteFileRequest

        path = posixpath.join(self._work_dir, name)
        self._call(self._deployment.runtime.write_file(WriteFileRequest(path=path, content=text)))
        return path

    # -- commands and tests ------------------------------------------------------------------------

    def run(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Run a shell command in the session (cwd and variables persist); never raises on failure or timeout.

        The command is written to a scratch file and sourced, so any text (several lines, heredocs, long
        lines) reaches bash intact and the terminal only ever sees one short line.
        """
        from swerex.exceptions import BashIncorrectSyntaxError, CommandTimeoutError

        if self._deployment is None:
            raise SandboxError("the sandbox has no deployment yet: call prepare(task) first")
        timeout = timeout_s if timeout_s is not None else self.config.command_timeout_s
        line = f"source {shlex.quote(self._scratch('command.sh', command))}" if self._work_dir else command
        start = time.perf_counter()
        try:
            output, exit_code = self._session_run(line, timeout)
        except CommandTimeoutError:
            return CommandResult(self._recover(), None, True, time.perf_counter() - start)
        except BashIncorrectSyntaxError as exc:
            return CommandResult(f"bash syntax error: {exc}", 2, False, time.perf_counter() - start)
        return CommandResult(output, exit_code, False, time.perf_counter() - start)

    def _session_run(self, line: str, timeout: float, restart: bool = True) -> tuple[str, int | None]:
        """One round trip: ``line`` then an echo of its exit status behind a marker only this session knows.

        SWE-ReX's own exit-status probe (check="silent"/"raise") needs a second round trip with 0.1-1 s
        deadlines that a loaded machine misses, leaving a stray prompt that shifts every later output by one;
        check="ignore" plus the marker avoids both. A missing marker means the session lost sync: restart it.
        """
        from swerex.runtime.abstract import BashAction

        action = BashAction(
            command=f"{line}\necho {self._marker}$?", session=SESSION, timeout=timeout, check="ignore"
        )
        obs = self._call(self._deployment.runtime.run_in_session(action))
        output = obs.output.replace("\r\n", "\n")
        head, found, tail = output.rpartition(self._marker)
        match = re.match(r"(\d+)", tail)
        if not found or not match:
            if not restart:
                raise SandboxError(f"the bash session does not answer as expected: {output[-500:]!r}")
            if not self._resync():
                log.warning("sandbox: lost sync with the bash session; starting a new one")
                self._restart_session()
            return output.strip("\n"), None
        return head.strip("\n"), int(match.group(1))

    def _sh(self, command: str, what: str = "") -> str:
        """Run a setup command that must succeed; SandboxError with its output otherwise."""
        result = self.run(command)
        if result.exit_code != 0:
            raise SandboxError(
                f"could not {what or command!r} in {self.repo_dir or 'the sandbox'} "
                f"(exit {result.exit_code}): {result.output.strip()[-2000:]}"
            )
        return result.output

    def _recover(self) -> str:
        """After a timeout: kill everything under the shell, interrupt it, check it answers; else restart it.

        Killing comes first: tests run under `timeout` in their own process group, which the terminal's
        Ctrl-C (BashInterruptAction) does not reach.
        """
        from swerex.runtime.abstract import BashInterruptAction, Command

        runtime = self._deployment.runtime
        kill_tree = (
            'kt() { for c in $(pgrep -P "$1"); do kt "$c"; kill -KILL "$c" 2>/dev/null; done; }; '
            f"kt {self._shell_pid}"
        )
        output = ""
        try:
            self._call(runtime.execute(Command(command=kill_tree, shell=True, timeout=10)))
            obs = self._call(
                runtime.run_in_session(BashInterruptAction(session=SESSION, timeout=0.3, n_retry=2))
            )
            output = obs.output.replace("\r\n", "\n")
            if self._resync():
                return output
        except Exception as exc:
            log.warning("sandbox: session did not recover after a timeout: %s", exc)
        log.warning("sandbox: starting a new bash session")
        self._restart_session()
        return output

    def _resync(self, attempts: int = 4) -> bool:
        """Consume stray prompts until an echo of a fresh token comes back before the prompt it ends with.

        Each try reads up to the next prompt, so stale prompts (from a killed command or a Ctrl-C) are
        used up one per try; timing-free, unlike draining output for a fixed time.
        """
        from swerex.runtime.abstract import BashAction

        for _ in range(attempts):
            token = f"__hrm_sync_{uuid.uuid4().hex[:12]}__"
            action = BashAction(command=f"echo {token}", session=SESSION, timeout=5.0, check="ignore")
            if token in self._call(self._deployment.runtime.run_in_session(action)).output:
                return True
        return False

    def _restart_session(self) -> None:
        from swerex.runtime.abstract import CloseBashSessionRequest

        try:
            self._call(self._deployment.runtime.close_session(CloseBashSessionRequest(session=SESSION)))
        except Exception as exc:  # already dead is fine
            log.debug("sandbox: closing the old session: %s", exc)
        self._open_session()

    def run_tests(self, test_ids: list[str] | None = None, timeout_s: float | None = None) -> TestReport:
        """Run the given tests (default: the whole suite) and parse per-test results."""
        self._require_repo()
        return self._run_tests(list(test_ids) if test_ids else self.test_paths, timeout_s)

    def _test_line(self, targets: list[str] | None, timeout: float) -> str:
        # targets None: the grading run. A subshell, so the session's cwd and variables stay as they were.
        return self._framing.command(self.repo_dir, targets, timeout)

    def _run_tests(self, targets: list[str], timeout_s: float | None) -> TestReport:
        timeout = timeout_s if timeout_s is not None else self.config.test_timeout_s
        result = self.run(self._test_line(targets, timeout), timeout_s=timeout + KILL_GRACE_S)
        return self._report(result)

    def _report(self, result: CommandResult) -> TestReport:
        timed_out = result.timed_out or result.exit_code == KILLED_EXIT
        return self._framing.parse(result.output, result.duration_s, timed_out)

    def evaluate(self, patch: str) -> Evaluation:
        """Judge ``patch`` against the buggy repository on FAIL_TO_PASS + PASS_TO_PASS; resets before and after.

        One session round trip: reset, apply, run, reset (the sandbox overhead is mostly round trips).
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
        result = self.run(script, timeout_s=timeout + KILL_GRACE_S)
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
            stacklevel=5,  # the caller of prepare()
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
        from swerex.deployment.remote import RemoteDeployment

        token = os.environ.get(config.token_env)
        if not token:
            raise SandboxError(
                f"remote sandbox: the env var {config.token_env} (token_env) holding the "
                f"server's auth token is not set"
            )
        host = config.host if "://" in config.host else f"http://{config.host}"
        return RemoteDeployment(host=host, port=config.port, auth_token=token, timeout=30.0)
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
