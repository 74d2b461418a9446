"""An agent that runs model-chosen commands gets a container by default; the host only by an explicit opt-in."""

from __future__ import annotations

import pytest

from hrm_spawn.envs.agents.llm import LLMAgent
from hrm_spawn.envs.sandbox import HostExecutionError, Sandbox, SandboxConfig, require_isolation


def test_llm_agent_refuses_the_local_sandbox_without_the_opt_in(fixture_task) -> None:
    agent = LLMAgent()
    with Sandbox(SandboxConfig(deployment="local")) as sb:
        with pytest.raises(HostExecutionError, match="sandbox.allow_host_execution=true"):
            agent.run(sb, fixture_task, "", agent.default_budget, seed=0)
        assert sb.task is None  # refused before anything ran


@pytest.mark.parametrize(
    "config, allowed",
    [
        (SandboxConfig(deployment="local"), False),
        (SandboxConfig(deployment="local", allow_host_execution=True), True),
        (SandboxConfig(deployment="docker"), True),
        (SandboxConfig(deployment="remote"), True),
    ],
)
def test_only_a_local_sandbox_without_the_opt_in_is_refused(config: SandboxConfig, allowed: bool) -> None:
    with Sandbox(config) as sb:
        if allowed:
            require_isolation(sb, "an agent")
        else:
            with pytest.raises(HostExecutionError, match="an agent runs model-chosen shell commands"):
                require_isolation(sb, "an agent")
