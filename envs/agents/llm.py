"""The LLM agent: mini-swe-agent's loop, run in this project's Sandbox against any chat endpoint.

mini-swe-agent (the reference bash-only loop behind public SWE-bench results) drives the model:
each reply holds one ```bash block, the command runs in the sandbox (``SandboxEnvironment``), its
output goes back, until the model runs ``echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT``. The candidate
is the sandbox's working-tree diff, so the model never has to write a patch file. The model is
reached through litellm (``EndpointModel``): OpenAI, Anthropic and any OpenAI-compatible server
(vLLM, llama.cpp, ...).

What this module adds around the loop: the budget (steps, tokens, USD, wall clock; checked before
each model call, an exhausted one is the agent's outcome), measured costs, delegation (the start
patch applied and summarised in the task text, with how the failing tests fare on it), a visible
check of the candidate on the failing tests, and the agent's identity: ``version`` is ``2+<hash>``
of every setting that changes its behaviour, so two models never share stored outcomes. An endpoint
that fails raises ``EndpointError``: never an outcome. Needs the ``llm`` extra.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agents.base import stable_hash
from hrm_spawn.envs.agents.llm_config import (  # noqa: F401  (LLMConfig: re-exported)
    _NOT_IDENTITY,
    LOOP,
    LLMConfig,
)
from hrm_spawn.envs.failures import is_infrastructure_failure
from hrm_spawn.envs.results import AgentResult, Budget, TestReport

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import Sandbox
    from hrm_spawn.envs.tasks import TaskInstance


class LLMAgent:
    """Agent ``llm``: kwargs are ``LLMConfig`` fields; ``version`` is ``2+<hash of behaviour()>``."""

    name = "llm"
    default_budget = Budget(max_turns=30, max_tokens=500_000, max_money_usd=2.0, max_wall_s=1800.0)

    def __init__(self, config: LLMConfig | dict[str, Any] | None = None, **kwargs: Any):
        base = config.model_dump() if isinstance(config, LLMConfig) else dict(config or {})
        self.config = LLMConfig.model_validate({**base, **kwargs})
        self.version = f"2+{stable_hash(self.behaviour(), 10)}"

    def behaviour(self) -> dict[str, Any]:
        """Every setting that changes what the agent does (the endpoint's address does not)."""
        settings = self.config.model_dump(exclude=_NOT_IDENTITY)
        if self.config.action_format == "tool":
            settings.pop("action_regex")
        return {
            **settings,
            "system_template": self.config.system(),
            "model": self.config.litellm_model(),
            "family": self.config.family(),
            "loop": LOOP,
        }

    def run(
        self, sandbox: Sandbox, task: TaskInstance, start_patch: str, budget: Budget, seed: int
    ) -> AgentResult:
        from hrm_spawn.envs.agents.mini_run import MiniRun
        from hrm_spawn.envs.sandbox import require_isolation

        require_isolation(sandbox, "the llm agent")  # a refusal, not an outcome: raised before the run

        started = time.monotonic()
        run = MiniRun(self.config, sandbox, budget, seed, api_key=os.environ.get(self.config.api_key_env))
        status, reason, visible = "error", "", None
        try:
            intro = self._introduce(sandbox, task, start_patch, run)
            status, reason = run.solve(self._variables(task, sandbox, intro))
            visible = self._check(sandbox, task, run)
        except Exception as exc:
            if is_infrastructure_failure(exc) or _is_sandbox_error(exc):
                raise  # not the agent's outcome: the job fails and runs again later
            status, reason = "error", f"{type(exc).__name__}: {str(exc)[:300]}"
        cost = run.cost(time.monotonic() - started)
        return AgentResult(
            patch=sandbox.diff(),
            status=status,
            cost=cost,
            visible=visible,
            visible_pass_rate=_pass_rate(visible, task),
            reason=reason,
            trajectory=run.trajectory(),
            agent=self.name,
            version=self.version,
            seed=seed,
        )

    def _introduce(self, sandbox: Sandbox, task: TaskInstance, start_patch: str, run: Any) -> str:
        """The task text: the issue, and for a delegated run what the earlier agent left."""
        issue = task.problem_statement or "There is no written issue; the failing tests below show the bug."
        if not start_patch.strip():
            return issue
        sandbox.apply_patch(start_patch)
        tests = run.run_tests(task.FAIL_TO_PASS) if self.config.delegation_tests else None
        return f"{issue}\n\n{delegation_summary(start_patch, tests, task, self.config.max_output_chars // 2)}"

    def _variables(self, task: TaskInstance, sandbox: Sandbox, intro: str) -> dict[str, Any]:
        failing = "\n".join(f"- {t}" for t in task.FAIL_TO_PASS[:30]) or "- (none listed)"
        return {"task": intro, "repo": task.repo, "repo_dir": sandbox.repo_dir, "failing_tests": failing}

    def _check(self, sandbox: Sandbox, task: TaskInstance, run: Any) -> TestReport | None:
        # With its time spent, the run gets no more test runs: the budget holds (no visible report then).
        if not self.config.visible_check or not task.FAIL_TO_PASS or not run.time_left():
            return None
        return run.run_tests(task.FAIL_TO_PASS)


def delegation_summary(start_patch: str, tests: TestReport | None, task: TaskInstance, limit: int) -> str:
    """What an earlier agent tried: the files and lines it changed, its diff, and how the tests fare."""
    from hrm_spawn.envs.agents.mini_env import cut_middle

    files: dict[str, list[int]] = {}
    current = ""
    for line in start_patch.splitlines():
        if line.startswith("+++ "):
            current = line[4:].removeprefix("b/")
            files.setdefault(current, [0, 0])
        elif current and line.startswith("+") and not line.startswith("+++"):
            files[current][0] += 1
        elif current and line.startswith("-") and not line.startswith("---"):
            files[current][1] += 1
    changed = ", ".join(f"{path} (+{a} -{r})" for path, (a, r) in files.items()) or "no files"
    parts = [
        "An earlier attempt on this task left changes that are already applied in the working tree. "
        f"It changed {changed}. Its diff:",
        f"```diff\n{cut_middle(start_patch.strip(), limit)}\n```",
    ]
    if tests is not None:
        passed = tests.count_passed(task.FAIL_TO_PASS)
        parts.append(
            f"With these changes {passed} of the {len(task.FAIL_TO_PASS)} failing tests pass. "
            "Continue from them: keep what is right, fix what is not."
        )
    return "\n".join(parts)


def _pass_rate(report: TestReport | None, task: TaskInstance) -> float:
    if report is None or not task.FAIL_TO_PASS:
        return 0.0
    return report.count_passed(task.FAIL_TO_PASS) / len(task.FAIL_TO_PASS)


def _is_sandbox_error(exc: BaseException) -> bool:
    """A fault of the sandbox itself; a start patch that does not apply is the agent contract's `error`."""
    from hrm_spawn.envs.sandbox import PatchApplyError, SandboxError

    return isinstance(exc, SandboxError) and not isinstance(exc, PatchApplyError)
