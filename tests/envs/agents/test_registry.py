"""The agent registry: built-in names, entry points from an installed distribution, module:Class paths."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hrm_spawn.envs.agents.base import Agent, AgentSpec
from hrm_spawn.envs.agents.registry import (
    AGENT_SPECS,
    AGENTS_ENV,
    ENTRY_POINT_GROUP,
    AgentNotFoundError,
    build_agent,
    get_agent,
    get_spec,
    list_agents,
    load_agent_specs,
    register_agent_specs,
    unregister_agent_specs,
)
from hrm_spawn.envs.agents.repair import RepairAgent
from hrm_spawn.envs.collect import AgentSlot, resolve_agents
from hrm_spawn.envs.config import CONFIG_DIR, ConfigError
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
    assert get_agent(plugin_dist).version == "7"  # no kwargs: the class's own version
    agent = get_agent(plugin_dist, greeting="hello-plugin")
    assert agent.name == "echo" and agent.version.startswith("7+cfg.")  # kwargs are identity
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


MY_AGENTS = """\
agents:
  - name: my-llm
    cls: hrm_spawn.envs.agents.llm:LLMAgent
    kwargs: {model: gpt-4o-mini, temperature: 0.0}
    budget: {max_turns: 12, max_money_usd: 0.5}
  - name: my-repair
    cls: hrm_spawn.envs.agents.repair:RepairAgent
    kwargs: {families: [operators], max_lines: 20}
    budget: {max_validations: 30}
"""


def test_builtin_identities_are_unchanged():
    """Stores keyed on the repair agents' versions stay valid: identity changes only with their settings."""
    for name in AGENT_SPECS:
        agent = get_agent(name)
        assert agent.version == type(agent).version, name
    for name, spec in load_agent_specs("agents/default").items():  # the preset that mirrors them
        agent = build_agent(spec)
        assert agent.version == type(agent).version, name
    assert get_agent("surgery").version == "3"  # bumped with what it grafts: old outcomes are not reused
    changed = get_agent("op-flip", max_lines=3)
    assert changed.version.startswith(f"{RepairAgent.version}+cfg.") and changed.max_lines == 3
    assert get_agent("op-flip", max_lines=3).version == changed.version  # stable
    assert get_agent("op-flip", max_lines=4).version != changed.version


def test_agents_file_with_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "agents.yaml"
    path.write_text(MY_AGENTS)
    specs = load_agent_specs(path)
    assert set(specs) == {"my-llm", "my-repair"} and specs["my-llm"].budget.max_turns == 12
    llm, repair = build_agent(specs["my-llm"]), build_agent(specs["my-repair"])
    assert llm.name == "my-llm" and llm.config.model == "gpt-4o-mini"
    assert repair.version.startswith(f"{RepairAgent.version}+cfg.")  # kwargs of a new name are identity

    other = load_agent_specs(path, ["agents.my-llm.kwargs.model=gpt-4o", "agents.my-llm.budget.max_turns=40"])
    assert other["my-llm"].kwargs["model"] == "gpt-4o" and other["my-llm"].budget.max_turns == 40
    assert build_agent(other["my-llm"]).version != llm.version  # another model: never the same outcomes
    budget_only = load_agent_specs(path, ["agents.my-llm.budget.max_turns=40"])["my-llm"]
    assert build_agent(budget_only).version != llm.version  # the step limit is identity too

    with pytest.raises(ConfigError, match="no agent 'nobody'"):
        load_agent_specs(path, ["agents.nobody.kwargs.model=x"])
    with pytest.raises(ValueError, match="temprature"):  # an LLM kwarg misspelt: the key is named
        build_agent(load_agent_specs(path, ["agents.my-llm.kwargs.temprature=1"])["my-llm"])

    # found by name in any process through the environment variable
    monkeypatch.setenv(AGENTS_ENV, str(path))
    assert "my-llm" in list_agents() and get_agent("my-llm").version == llm.version
    monkeypatch.setenv(AGENTS_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(AgentNotFoundError, match="missing.yaml"):
        list_agents()


def test_agents_file_errors_name_the_entry(tmp_path: Path):
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - {cls: 'a:B'}\n")
    with pytest.raises(ValueError, match=r"agents\[0\] needs a 'name'"):
        load_agent_specs(path)
    path.write_text("agents:\n  - {name: x, cls: 'a:B'}\n  - {name: x, cls: 'a:C'}\n")
    with pytest.raises(ValueError, match="used twice"):
        load_agent_specs(path)
    path.write_text("agent:\n  x: {cls: 'a:B'}\n")
    with pytest.raises(ValueError, match="top-level 'agents'"):
        load_agent_specs(path)


def test_two_model_preset_loads_and_validates():
    specs = load_agent_specs("agents/llm-two-models")
    assert set(specs) == {"llm-cheap", "llm-strong"}
    cheap, strong = (build_agent(specs[n]) for n in ("llm-cheap", "llm-strong"))
    assert cheap.config.base_url and cheap.config.litellm_model().startswith("openai/")
    assert cheap.config.price_in_per_mtok is not None  # a self-hosted model needs the price table
    assert strong.config.base_url is None and strong.config.api_key_env == "OPENAI_API_KEY"
    assert cheap.version != strong.version
    assert specs["llm-cheap"].budget.max_money_usd < specs["llm-strong"].budget.max_money_usd
    # shipped presets are known by name, so an env config can list them
    assert {"llm-cheap", "llm-strong"} <= set(list_agents())
    assert get_agent("llm-cheap").version == cheap.version


def test_slots_carry_the_spec_to_other_processes(tmp_path: Path):
    path = tmp_path / "agents.yaml"
    path.write_text(MY_AGENTS)
    specs = load_agent_specs(path, ["agents.my-llm.kwargs.temperature=0.3"])
    register_agent_specs(specs)
    try:
        slot = resolve_agents(["my-llm", "op-flip"])
        assert slot[0].spec == specs["my-llm"] and slot[0].version == build_agent(specs["my-llm"]).version
        assert slot[1].version == RepairAgent.version
    finally:
        unregister_agent_specs(specs)
    # a worker rebuilds the agent from the spec alone (the registration is gone, as in a new process)
    with pytest.raises(AgentNotFoundError):
        get_spec("my-llm")
    shipped = AgentSlot(slot[0].name, slot[0].version, slot[0].budget, spec=slot[0].spec)
    assert shipped.get_agent().version == slot[0].version and shipped.get_agent().config.temperature == 0.3


def test_agents_command_prints_identities(capsys: pytest.CaptureFixture[str]):
    import json

    from hrm_spawn.trainers.cli import main

    assert main(["agents", "--file", "agents/llm-two-models", "agents.llm-strong.kwargs.model=gpt-4.1"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == {"llm-cheap", "llm-strong"}
    assert rows["llm-cheap"]["version"] == get_agent("llm-cheap").version
    assert rows["llm-strong"]["version"] != get_agent("llm-strong").version  # the override is identity
    assert rows["llm-strong"]["budget"]["max_turns"] == 50
    assert main(["agents", "agents.llm-strong.kwargs.model=x"]) == 2  # overrides need --file
    assert main(["agents"]) == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert names[: len(AGENT_SPECS)] == list(AGENT_SPECS) and {"llm-cheap", "llm-strong"} <= set(names)


def test_moving_a_server_keeps_the_identity_changing_the_model_does_not(capsys: pytest.CaptureFixture[str]):
    import json

    from hrm_spawn.trainers.cli import main

    def version(*overrides: str) -> str:
        assert main(["agents", "--file", "agents/llm-two-models", *overrides]) == 0
        rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
        return rows["llm-cheap"]["version"]

    base = version()
    assert version("agents.llm-cheap.kwargs.base_url=http://10.0.0.5:9000/v1") == base
    assert version("agents.llm-cheap.kwargs.model=Qwen/Qwen2.5-Coder-32B-Instruct") != base


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agents.llm-chep.kwargs.model=x", "has no agent 'llm-chep' (did you mean 'llm-cheap'?)"),
        ("agents.llm-cheap.kwarg.model=x", "unknown key 'kwarg' (did you mean 'kwargs'?)"),
        ("agents.llm-cheap.budget.max_turn=5", "unknown budget key 'max_turn' (did you mean 'max_turns'"),
        ("agents.llm-cheap=5", "agent overrides are agents.NAME.kwargs.KEY=value"),
    ],
)
def test_a_bad_override_names_itself_and_the_key_meant(override: str, message: str):
    with pytest.raises(ConfigError) as caught:
        load_agent_specs("agents/llm-two-models", [override])
    assert f"command line {override!r}" in str(caught.value) and message in str(caught.value)


def test_a_bad_kwarg_names_the_file_the_agent_and_the_key(capsys: pytest.CaptureFixture[str]):
    from hrm_spawn.trainers.cli import main

    cases = [
        (
            "agents/llm-two-models",
            "agents.llm-cheap.kwargs.modl=x",
            "agent 'llm-cheap': unknown kwarg 'modl' (did you mean 'model'?)",
        ),
        (
            "agents/llm-two-models",
            "agents.llm-cheap.kwargs.temperature=hot",
            "agent 'llm-cheap': kwarg 'temperature': ",
        ),
        (
            "agents/default",
            "agents.op-flip.kwargs.max_line=3",
            "agent 'op-flip': unknown kwarg 'max_line' (did you mean 'max_lines'?)",
        ),
    ]
    for file, override, message in cases:
        assert main(["agents", "--file", file, override]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"hrm-spawn agents: error: {CONFIG_DIR / file}.yaml: {message}"), err
        assert "\n" not in err and "pydantic" not in err
    with pytest.raises(ValueError, match="agent 'op-flip': unknown kwarg 'max_line'"):
        get_agent("op-flip", max_line=3)  # the same check wherever an agent is built


def test_a_class_that_cannot_be_imported_names_the_file_and_agent(tmp_path: Path, capsys) -> None:
    from hrm_spawn.trainers.cli import main

    path = tmp_path / "mine.yaml"
    path.write_text("agents:\n  mine: {cls: 'hrm_spawn.envs.agents.llm:LLMAgnt'}\n")
    assert main(["agents", "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hrm-spawn agents: error: {path}: agent 'mine': agent path "), err
    assert "LLMAgnt" in err
