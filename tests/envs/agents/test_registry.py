"""The agent registry: built-in names, entry points from an installed distribution, module:Class paths."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hrm_spawn.envs.agents.base import Agent, AgentSpec
from hrm_spawn.envs.agents.registry import (
    AGENT_SPECS,
    ENTRY_POINT_GROUP,
    AgentNotFoundError,
    get_agent,
    get_spec,
    list_agents,
    load_agent_specs,
)
from hrm_spawn.envs.agents.repair import RepairAgent
from hrm_spawn.envs.config import CONFIG_DIR
from hrm_spawn.envs.results import Budget

PLUGIN = '''
from hrm_spawn.envs.results import AgentResult, Budget, Cost


class EchoAgent:
    """Returns the start patch unchanged, after one measured sandbox command."""

    name = ""
    version = "7"
    default_budget = Budget(max_validations=3)

    def __init__(self, greeting="hi"):
        self.greeting = greeting

    def run(self, sandbox, task, start_patch, budget, seed):
        out = sandbox.run("echo " + self.greeting)
        return AgentResult(patch=start_patch, status="ok", cost=Cost(sandbox_s=out.duration_s),
                           trajectory=[out.output.strip()], agent=self.name, version=self.version, seed=seed)
'''


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tiny installed distribution outside the package: a module plus *.dist-info/entry_points.txt."""
    (tmp_path / "hrm_echo_plugin.py").write_text(PLUGIN)
    info = tmp_path / "hrm_echo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hrm-echo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
        [{ENTRY_POINT_GROUP}]
        echo = hrm_echo_plugin:EchoAgent
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "echo"
    sys.modules.pop("hrm_echo_plugin", None)


def test_builtin_agents_are_listed_and_built():
    names = list_agents()
    assert {"op-flip", "swap", "const", "cond", "broad"} <= set(names)
    agent = get_agent("const")
    assert isinstance(agent, RepairAgent) and isinstance(agent, Agent)
    assert agent.name == "const" and agent.families == ["constants"]
    assert get_agent("const", max_lines=3).max_lines == 3  # kwargs override the spec


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(AgentNotFoundError) as err:
        get_agent("no-such-agent")
    assert "op-flip" in str(err.value) and ENTRY_POINT_GROUP in str(err.value)
    with pytest.raises(AgentNotFoundError, match="cannot import module"):
        get_agent("no_such_module_xyz:Agent")
    with pytest.raises(AgentNotFoundError, match="no attribute"):
        get_agent("hrm_spawn.envs.agents.repair:Missing")


def test_entry_point_agent_from_outside_the_package_is_found_and_run(plugin_dist, sandbox, bug_task):
    assert plugin_dist in list_agents()
    agent = get_agent(plugin_dist, greeting="hello-plugin")
    assert agent.name == "echo" and agent.version == "7"
    assert get_spec(plugin_dist).budget.max_validations == 3
    task = bug_task("operators")
    sandbox.prepare(task)
    result = agent.run(sandbox, task, "", Budget(), 5)
    assert result.status == "ok" and result.trajectory == ["hello-plugin"] and result.seed == 5


def test_module_class_path_agent_is_found_and_run(plugin_dist, sandbox, bug_task):
    agent = get_agent("hrm_echo_plugin:EchoAgent")
    assert agent.name == "hrm_echo_plugin:EchoAgent"
    task = bug_task("operators")
    sandbox.prepare(task)
    assert agent.run(sandbox, task, "", Budget(), 0).trajectory == ["hi"]


def test_default_yaml_mirrors_the_builtin_specs():
    specs = load_agent_specs(CONFIG_DIR / "agents" / "default.yaml")
    assert set(specs) == set(AGENT_SPECS)
    for name, spec in specs.items():
        assert spec.to_dict() == AGENT_SPECS[name].to_dict(), name


def test_bad_spec_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  mine: {cls: 'pkg.mod:Cls', budget: {max_validatons: 3}}\n")
    with pytest.raises(ValueError, match="mine.*budget"):
        load_agent_specs(path)
    path.write_text("agents:\n  mine: {cls: 'no-colon'}\n")
    with pytest.raises(ValueError, match="module:Class"):
        load_agent_specs(path)
    assert (
        AgentSpec.from_dict("ok", {"cls": "a:B", "budget": {"max_validations": 2}}).budget.max_validations
        == 2
    )


def test_repair_agent_rejects_bad_settings():
    with pytest.raises(ValueError, match="families"):
        RepairAgent(families=["telepathy"])
    with pytest.raises(ValueError):
        RepairAgent(max_lines=0)
