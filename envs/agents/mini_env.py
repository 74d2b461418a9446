"""mini-swe-agent's ``Environment`` over this project's ``Sandbox``: one adapter for every deployment.

mini-swe-agent runs each action in a fresh subshell (``cd`` and ``export`` do not carry over) and
ends a run when a command's output starts with ``COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT``. This
adapter keeps both rules on a ``Sandbox`` session, so the same agent runs on local, remote and docker
deployments: each action runs as ``( cd REPO; test env; command )`` (an ``exit`` in it ends only the
subshell), with the repository's interpreter first on ``PATH`` so ``python -m pytest`` means the
task's Python. Timeouts are cut to what is left of the run's wall-clock budget, and long outputs keep
their head and tail.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hrm_spawn.envs.agents.mini_imports import minisweagent

minisweagent()
from minisweagent.exceptions import Submitted  # noqa: E402 (after the offline defaults)

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import Sandbox

SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
MIN_COMMAND_S = 1.0  # a command always gets at least this long, even at the end of the wall budget


class SandboxEnvConfig(BaseModel):
    """What the templates and the saved trajectory see of the environment."""

    cwd: str = ""
    timeout: float = 60.0  # seconds per command
    max_output_chars: int = 10_000


class SandboxEnvironment:
    """mini-swe-agent ``Environment`` protocol (``execute``, ``get_template_vars``, ``serialize``)."""

    def __init__(
        self,
        sandbox: Sandbox,
        command_timeout_s: float = 60.0,
        max_output_chars: int = 10_000,
        deadline: float | None = None,
        hidden_env: tuple[str, ...] = (),
    ):
        self.sandbox = sandbox
        self.hidden_env = hidden_env  # variables unset for the model's commands (its own API key)
        self.config = SandboxEnvConfig(
            cwd=sandbox.repo_dir, timeout=command_timeout_s, max_output_chars=max_output_chars
        )
        self.deadline = deadline  # time.monotonic() value at which the wall-clock budget ends
        self.sandbox_s = 0.0
        self.log: list[str] = []  # one short line per command, for AgentResult.trajectory

    def execute(self, action: dict, cwd: str = "", *, timeout: float | None = None) -> dict[str, Any]:
        command = str(action.get("command", ""))
        limit = self._timeout(timeout)
        result = self.sandbox.run(self._wrap(command, cwd), timeout_s=limit)
        self.sandbox_s += float(result.duration_s or 0.0)
        output = {
            "output": cut_middle(result.output, self.config.max_output_chars),
            "returncode": -1 if result.timed_out else result.exit_code,
            "exception_info": f"the command timed out after {limit:g} s and was killed"
            if result.timed_out
            else "",
        }
        first = command.strip().splitlines()[0][:100] if command.strip() else ""
        note = " (timed out)" if result.timed_out else ""
        self.log.append(f"$ {first} -> exit {output['returncode']}{note}")
        lines = result.output.lstrip().splitlines()
        if lines and lines[0].strip() == SUBMIT_MARKER and result.exit_code == 0:
            submission = "\n".join(lines[1:])
            raise Submitted(
                {
                    "role": "exit",
                    "content": submission,
                    "extra": {"exit_status": "Submitted", "submission": submission},
                }
            )
        return output

    def _timeout(self, asked: float | None) -> float:
        limit = float(asked or self.config.timeout)
        if self.deadline is not None:
            limit = min(limit, max(MIN_COMMAND_S, self.deadline - time.monotonic()))
        return limit

    def _wrap(self, command: str, cwd: str) -> str:
        sandbox = self.sandbox
        where = posixpath.join(sandbox.repo_dir, cwd) if cwd else sandbox.repo_dir
        exports = [f"export {k}={shlex.quote(v)}" for k, v in (sandbox.test_env or {}).items()]
        exports.append("export PAGER=cat GIT_PAGER=cat")  # the session is a terminal: no pager may wait
        if self.hidden_env:  # a local shell inherits the host's variables: `env` must not show the key
            exports.append("unset " + " ".join(shlex.quote(v) for v in self.hidden_env))
        if sandbox.python and posixpath.isabs(sandbox.python):
            exports.append(f'export PATH={shlex.quote(posixpath.dirname(sandbox.python))}:"$PATH"')
        # A subshell: cwd, variables and an `exit` stay inside; the session is as the adapter left it.
        return "(\n" + "\n".join([f"cd {shlex.quote(where)} || exit 1", *exports, command]) + "\n)"

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return {**self.config.model_dump(), "repo_dir": self.sandbox.repo_dir, **kwargs}

    def serialize(self) -> dict:
        return {
            "info": {
                "config": {
                    "environment": self.config.model_dump(mode="json"),
                    "environment_type": f"{type(self).__module__}.{type(self).__name__}",
                }
            }
        }


def cut_middle(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: its head and tail, with a note of how much was left out."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters left out] ...\n{text[-half:]}"
