"""A bash-loop agent driven by any OpenAI-compatible chat-completions endpoint.

Each turn the model answers with one shell command in a ```bash block; the command runs in the
sandbox and its (truncated) output goes back as the next user message. The model ends with a line
``SUBMIT``; the candidate is then the sandbox's working-tree diff. Tokens come from the endpoint's
``usage``, money from the configured prices, so the cost is measured, never estimated. Needs the
``llm`` extra (``pip install 'hrm-spawn[llm]'``).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from hrm_spawn.envs.config import StrictModel
from hrm_spawn.envs.results import AgentResult, Budget, Cost

if TYPE_CHECKING:
    from hrm_spawn.envs.sandbox import Sandbox
    from hrm_spawn.envs.tasks import TaskInstance

_BASH_BLOCK_RE = re.compile(r"```(?:bash|sh|shell)?[ \t]*\n(.*?)```", re.DOTALL)
_SUBMIT_RE = re.compile(r"^\s*SUBMIT\s*$", re.MULTILINE)

SYSTEM_PROMPT = """You fix a bug in a Python repository by running shell commands.
Rules:
- Each reply holds exactly one shell command in a ```bash block. You will get its exit code and output.
- The command runs in a non-interactive bash shell in the repository; do not start editors or pagers.
- Edit files with tools such as sed, python or cat with a here-document.
- When the fix is done, reply with a line containing only SUBMIT (no command). Your changes to the
  working tree are the answer; do not commit them."""


class LLMConfig(StrictModel):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from config
    price_in_per_mtok: float = Field(0.0, ge=0)  # USD per million prompt tokens
    price_out_per_mtok: float = Field(0.0, ge=0)  # USD per million completion tokens
    max_turns: int = Field(30, ge=1)
    command_timeout_s: float = Field(60.0, gt=0)
    max_observation_chars: int = Field(4000, ge=200)
    max_reply_tokens: int = Field(1024, ge=1)
    temperature: float = Field(0.0, ge=0)
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(1, ge=0)


class LLMAgent:
    """Agent ``llm`` v1; kwargs are ``LLMConfig`` fields (``base_url``, ``model``, prices, ...)."""

    name = "llm"
    version = "1"
    default_budget = Budget(max_turns=30, max_tokens=300_000)

    def __init__(self, config: LLMConfig | dict[str, Any] | None = None, **kwargs: Any):
        base = config.model_dump() if isinstance(config, LLMConfig) else dict(config or {})
        self.config = LLMConfig.model_validate({**base, **kwargs})
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            try:
                from openai import OpenAI
            except ImportError as exc:
                raise RuntimeError(
                    "the llm agent needs the openai client: pip install 'hrm-spawn[llm]'"
                ) from exc
            cfg = self.config
            # local endpoints often need no key; the client insists on one, so send a placeholder
            key = os.environ.get(cfg.api_key_env) or "not-set"
            self._client = OpenAI(
                base_url=cfg.base_url, api_key=key, timeout=cfg.request_timeout_s, max_retries=cfg.max_retries
            )
        return self._client

    def run(
        self, sandbox: Sandbox, task: TaskInstance, start_patch: str, budget: Budget, seed: int
    ) -> AgentResult:
        from hrm_spawn.envs.sandbox import require_isolation

        require_isolation(sandbox, "the llm agent")  # a refusal, not an outcome: raised before the run
        run = _Run(self, sandbox, task, budget, seed)
        try:
            run.enter()
            if start_patch:
                sandbox.apply_patch(start_patch)
            run.loop()
        except Exception as exc:  # an endpoint or sandbox failure is a result, not a crash of the caller
            run.fail(exc)
        return run.result()


class _Run:
    """The state of one attempt: the conversation, what it cost, how it ended."""

    def __init__(self, agent: LLMAgent, sandbox: Sandbox, task: TaskInstance, budget: Budget, seed: int):
        self.agent, self.cfg, self.sandbox, self.task, self.budget, self.seed = (
            agent,
            agent.config,
            sandbox,
            task,
            budget,
            seed,
        )
        self.cost = Cost()
        self.turns = 0
        self.status = "budget_exhausted"
        self.reason = ""
        self.trajectory: list[str] = []
        self.messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task_prompt(task, sandbox)},
        ]

    def enter(self) -> None:
        """Start in the repository with the test environment: an earlier attempt may have left the shell elsewhere."""
        repo_dir = getattr(self.sandbox, "repo_dir", "")
        env = getattr(self.sandbox, "test_env", None) or {}
        if not repo_dir:
            return
        exports = "".join(f" && export {k}={shlex.quote(v)}" for k, v in env.items())
        result = self.sandbox.run(
            f"cd {shlex.quote(repo_dir)}{exports}", timeout_s=self.cfg.command_timeout_s
        )
        self.cost.sandbox_s += float(getattr(result, "duration_s", 0.0) or 0.0)
        if result.exit_code != 0:
            raise RuntimeError(f"cannot enter the repository {repo_dir}: {result.output.strip()[-300:]}")

    def loop(self) -> None:
        while True:
            if self.turns >= self.cfg.max_turns or self.budget.exhausted_by(self.cost, self.turns):
                self.status, self.reason = "budget_exhausted", f"budget spent after {self.turns} turns"
                return
            reply = self.ask()
            self.messages.append({"role": "assistant", "content": reply})
            command = extract_command(reply)
            if command is not None:
                self.messages.append({"role": "user", "content": self.execute(command)})
            if _SUBMIT_RE.search(reply):
                self.status = "ok"
                self.trajectory.append(f"turn {self.turns}: SUBMIT")
                return
            if command is None:
                self.trajectory.append(f"turn {self.turns}: no command")
                self.messages.append(
                    {
                        "role": "user",
                        "content": "No command found. Reply with one ```bash block, "
                        "or a line SUBMIT when you are done.",
                    }
                )

    def ask(self) -> str:
        cfg = self.cfg
        response = self.agent.client().chat.completions.create(
            model=cfg.model,
            messages=self.messages,
            temperature=cfg.temperature,
            max_tokens=cfg.max_reply_tokens,
            seed=self.seed,
        )
        self.turns += 1
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        if usage is None:
            self.trajectory.append(f"turn {self.turns}: the endpoint reported no token usage")
        self.cost.tokens_in += tokens_in
        self.cost.tokens_out += tokens_out
        self.cost.money_usd += (tokens_in * cfg.price_in_per_mtok + tokens_out * cfg.price_out_per_mtok) / 1e6
        if not response.choices:
            raise RuntimeError("the endpoint returned no choices")
        return response.choices[0].message.content or ""

    def execute(self, command: str) -> str:
        start = time.monotonic()
        result = self.sandbox.run(command, timeout_s=self.cfg.command_timeout_s)
        self.cost.sandbox_s += float(getattr(result, "duration_s", 0.0) or (time.monotonic() - start))
        first_line = command.strip().splitlines()[0][:100] if command.strip() else ""
        note = " (timed out)" if result.timed_out else ""
        self.trajectory.append(f"turn {self.turns}: $ {first_line} -> exit {result.exit_code}{note}")
        return format_observation(result, self.cfg.max_observation_chars, self.cfg.command_timeout_s)

    def fail(self, exc: Exception) -> None:
        self.status, self.reason = classify_error(exc, self.cfg)
        self.trajectory.append(f"turn {self.turns}: {self.status}: {self.reason}")

    def result(self) -> AgentResult:
        try:
            patch = self.sandbox.diff()
        except Exception as exc:  # keep the first reason; a broken sandbox yields no candidate
            patch = ""
            if self.status != "error":
                self.status, self.reason = "error", f"cannot read the candidate diff: {exc}"
        return AgentResult(
            patch=patch,
            status=self.status,
            cost=self.cost,
            reason=self.reason,
            trajectory=self.trajectory,
            agent=self.agent.name,
            version=self.agent.version,
            seed=self.seed,
        )


def task_prompt(task: TaskInstance, sandbox: Any) -> str:
    tests = "\n".join(f"- {t}" for t in task.FAIL_TO_PASS[:20])
    python = getattr(sandbox, "python", None) or "python"
    parts = [
        f"Repository: {task.repo}, checked out at {getattr(sandbox, 'repo_dir', '.')} (the working directory).",
        f"Issue:\n{task.problem_statement}" if task.problem_statement else "There is no written issue.",
        f"These tests fail and must pass after your fix:\n{tests}",
        f"Run tests with: {python} -m pytest -q <test id>",
    ]
    return "\n\n".join(parts)


def extract_command(reply: str) -> str | None:
    """The first ```bash block's text, or None; only one command runs per turn."""
    match = _BASH_BLOCK_RE.search(reply)
    if not match or not match.group(1).strip():
        return None
    return match.group(1).strip()


def format_observation(result: Any, limit: int, timeout_s: float) -> str:
    output = str(getattr(result, "output", "") or "")
    if len(output) > limit:  # keep both ends: the command's start and the error at the bottom
        half = limit // 2
        output = f"{output[:half]}\n... [{len(output) - limit} characters cut] ...\n{output[-half:]}"
    head = (
        f"timed out: stopped after {timeout_s:g} s" if result.timed_out else f"exit code: {result.exit_code}"
    )
    return f"{head}\n{output}"


def classify_error(exc: Exception, cfg: LLMConfig) -> tuple[str, str]:
    """(status, reason) for a failure inside the loop."""
    try:
        import openai
    except ImportError:
        return "error", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", f"the endpoint {cfg.base_url} did not answer within {cfg.request_timeout_s:g} s"
    if isinstance(exc, openai.APIConnectionError):
        return "error", f"endpoint unreachable: {cfg.base_url} ({exc})"
    if isinstance(exc, openai.AuthenticationError):
        return "error", f"the endpoint refused the key from ${cfg.api_key_env} (HTTP 401)"
    if isinstance(exc, openai.APIStatusError):
        return "error", f"the endpoint answered HTTP {exc.status_code}: {str(exc)[:200]}"
    return "error", f"{type(exc).__name__}: {str(exc)[:300]}"
