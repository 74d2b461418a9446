"""One LLM-agent run: mini-swe-agent's ``DefaultAgent`` with this project's budget, model and sandbox.

mini-swe-agent's own limits (steps, USD, wall seconds) are turned off and ``Budget`` is checked instead,
before every model call, so tokens count too and one rule decides every agent's budget. A command's
timeout is cut to what is left of the wall-clock budget, so a run overshoots it by at most one model
request (``request_timeout_s``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agents.llm_config import OBSERVATION_TEMPLATE
from hrm_spawn.envs.agents.mini_env import SandboxEnvironment
from hrm_spawn.envs.agents.mini_model import (
    ContextWindowError,
    EndpointModel,
    EndpointSettings,
    ToolEndpointModel,
)
from hrm_spawn.envs.results import Budget, Cost, TestReport

from minisweagent.agents.default import DefaultAgent  # isort: skip (imported after mini_env set it up)
from minisweagent.exceptions import LimitsExceeded  # isort: skip

if TYPE_CHECKING:
    from hrm_spawn.envs.agents.llm_config import LLMConfig
    from hrm_spawn.envs.sandbox import Sandbox


class BudgetedAgent(DefaultAgent):
    """``DefaultAgent`` that stops, before asking the model again, once ``Budget`` is spent."""

    def __init__(
        self,
        model: EndpointModel | ToolEndpointModel,
        env: SandboxEnvironment,
        budget: Budget,
        spent: Callable[[], Cost],
        **config,
    ):
        super().__init__(model, env, step_limit=0, cost_limit=0.0, wall_time_limit_seconds=0, **config)
        self.budget, self.spent = budget, spent

    def query(self) -> dict:
        limits = spent_limits(self.budget, self.spent(), self.model.usage.calls)
        if limits:
            reason = f"budget spent ({', '.join(limits)}) after {self.model.usage.calls} steps"
            raise LimitsExceeded(
                {
                    "role": "exit",
                    "content": reason,
                    "extra": {"exit_status": "LimitsExceeded", "submission": ""},
                }
            )
        return super().query()


def spent_limits(budget: Budget, cost: Cost, steps: int) -> list[str]:
    """The names of the budget's limits that ``cost`` has reached (empty: keep going)."""
    checks = {
        "steps": (budget.max_turns, steps),
        "tokens": (budget.max_tokens, cost.tokens_in + cost.tokens_out),
        "USD": (budget.max_money_usd, cost.money_usd),
        "wall seconds": (budget.max_wall_s, cost.wall_s),
        "sandbox seconds": (budget.max_sandbox_s, cost.sandbox_s),
    }
    return [name for name, (limit, used) in checks.items() if limit is not None and used >= limit]


def hidden_variables(own: str) -> tuple[str, ...]:
    """Variables unset for the model's commands: its own key's, and every ``*_API_KEY`` of this process
    (a pool runs a cheap self-hosted model next to an API model: the local sandbox's shell inherits the
    host's variables, and the cheap model must not read the strong one's key)."""
    return tuple(dict.fromkeys([own, *sorted(k for k in os.environ if k.upper().endswith("_API_KEY"))]))


class MiniRun:
    """The parts of one run (model, environment, agent) and what they cost."""

    def __init__(self, config: LLMConfig, sandbox: Sandbox, budget: Budget, seed: int, api_key: str | None):
        self.config, self.sandbox, self.budget = config, sandbox, budget
        self.started = time.monotonic()
        deadline = self.started + budget.max_wall_s if budget.max_wall_s is not None else None
        self.env = SandboxEnvironment(
            sandbox,
            config.command_timeout_s,
            config.max_output_chars,
            deadline,
            hidden_env=hidden_variables(config.api_key_env),
        )
        settings = EndpointSettings(
            model=config.litellm_model(),
            base_url=config.base_url,
            # local servers often need no key, but litellm's OpenAI client insists on one
            api_key=api_key or ("not-set" if config.base_url else None),
            temperature=config.temperature,
            max_reply_tokens=config.max_reply_tokens,
            request_timeout_s=config.request_timeout_s,
            max_retries=config.max_retries,
            retry_wait_s=config.retry_wait_s,
            price_in_per_mtok=config.price_in_per_mtok,
            price_out_per_mtok=config.price_out_per_mtok,
            price_source=config.price_source,
            seed=seed,
        )
        formats: dict[str, Any] = {
            "format_error_template": config.format_error(),
            "observation_template": OBSERVATION_TEMPLATE,
        }
        if config.action_format == "tool":
            self.model: EndpointModel | ToolEndpointModel = ToolEndpointModel(settings, **formats)
        else:
            self.model = EndpointModel(settings, action_regex=config.action_regex, **formats)
        self.test_runs = 0
        self.test_s = 0.0
        self.exit_status = ""
        self.agent: BudgetedAgent | None = None

    def run_tests(self, test_ids: list[str]) -> TestReport:
        report = self.sandbox.run_tests(test_ids)
        self.test_runs += 1
        self.test_s += report.duration_s
        return report

    def solve(self, variables: dict[str, Any]) -> tuple[str, str]:
        """Run the loop; (status, reason) of how it ended."""
        cfg = self.config
        self.agent = BudgetedAgent(
            self.model,
            self.env,
            self.budget,
            lambda: self.cost(time.monotonic() - self.started),
            system_template=cfg.system(),
            instance_template=cfg.instance_template,
            max_consecutive_format_errors=cfg.max_format_errors,
        )
        task = variables.pop("task")
        try:
            info = self.agent.run(task=task, **variables)
        except ContextWindowError as exc:
            self.exit_status = "ContextWindowExceeded"
            return "error", str(exc)
        self.exit_status = str(info.get("exit_status", ""))
        last = str(self.agent.messages[-1].get("content", "")) if self.agent.messages else ""
        if self.exit_status == "Submitted":
            return "ok", ""
        if self.exit_status == "LimitsExceeded":
            return "budget_exhausted", last
        if self.exit_status == "RepeatedFormatError":
            what = "a bash tool call" if cfg.action_format == "tool" else "exactly one ```bash block"
            return "error", f"{cfg.max_format_errors} replies in a row without {what}"
        return "error", f"the loop ended with {self.exit_status or 'no exit status'}: {last[:200]}"

    def time_left(self) -> bool:
        """Neither the wall-clock nor the sandbox-seconds budget is spent."""
        spent = spent_limits(self.budget, self.cost(time.monotonic() - self.started), 0)
        return not {"wall seconds", "sandbox seconds"} & set(spent)

    def cost(self, wall_s: float) -> Cost:
        usage = self.model.usage
        return Cost(
            sandbox_s=self.env.sandbox_s + self.test_s,
            test_runs=self.test_runs,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            money_usd=usage.money_usd,
            wall_s=wall_s,
            steps=usage.calls,
        )

    def trajectory(self) -> list[str]:
        lines = [f"step {i}: {line}" for i, line in enumerate(self.env.log, 1)]
        lines += self.model.usage.notes
        if self.exit_status:
            lines.append(f"exit: {self.exit_status}")
        return lines
