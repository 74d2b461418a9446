"""The LLM agent (mini-swe-agent in the Sandbox) against recorded chat completions served on 127.0.0.1.

Every run here is real apart from the model: litellm's HTTP client talks to ``ReplayServer``, the
commands of the recorded replies run in a local Sandbox on the fixture repository, and the candidate is
judged by ``Sandbox.evaluate`` on the hidden tests.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("minisweagent")

from llm_replay import ReplayServer, free_port, recorded, reply  # noqa: E402

from hrm_spawn.envs.agents.base import AgentSpec  # noqa: E402
from hrm_spawn.envs.agents.llm import LLMAgent, LLMConfig  # noqa: E402
from hrm_spawn.envs.agents.mini_env import cut_middle  # noqa: E402
from hrm_spawn.envs.agents.registry import (  # noqa: E402
    build_agent,
    register_agent_specs,
    unregister_agent_specs,
)
from hrm_spawn.envs.collect import collect  # noqa: E402
from hrm_spawn.envs.failures import EndpointError, is_infrastructure_failure  # noqa: E402
from hrm_spawn.envs.results import Budget  # noqa: E402
from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402
from hrm_spawn.envs.tasks import TaskInstance  # noqa: E402

KEY_ENV = "TEST_LLM_KEY"
NEVER_DONE = "Let me look around once more.\n\n```bash\nls\n```"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ReplayServer] = []

    def start(replies: list[dict[str, Any]]) -> ReplayServer:
        servers.append(ReplayServer(replies))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def task(fixture_task_session: TaskInstance) -> TaskInstance:
    return fixture_task_session.model_copy(deep=True)


@pytest.fixture
def box(sandbox: Sandbox, task: TaskInstance) -> Sandbox:
    """What Agent.run receives: the sandbox prepared for the clamp task, reset to the buggy state.

    The replies are recorded and known, so running them on this host is opted into explicitly."""
    sandbox.config.allow_host_execution = True
    if sandbox.task is None or sandbox.task.instance_id != task.instance_id:
        sandbox.prepare(task)
    sandbox.reset()
    return sandbox


def agent_for(server: ReplayServer | None, **over: Any) -> LLMAgent:
    config: dict[str, Any] = {
        "base_url": server.base_url if server else f"http://127.0.0.1:{free_port()}/v1",
        "model": "gpt-4o-mini",
        "api_key_env": KEY_ENV,
        "max_retries": 0,
        "retry_wait_s": 0.0,
    }
    return LLMAgent(**{**config, **over})


def test_recorded_replies_really_fix_the_task(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    import litellm

    script = recorded("llm_fix_clamp.json")
    server = serve(script)
    agent = agent_for(server)
    result = agent.run(box, task, "", Budget(max_turns=10), seed=7)

    assert result.status == "ok", result.reason
    assert "-    if value < high:\n+    if value > high:" in result.patch
    evaluation = box.evaluate(result.patch)  # the hidden tests: FAIL_TO_PASS and PASS_TO_PASS
    assert evaluation.resolved and evaluation.f2p_total == len(task.FAIL_TO_PASS) >= 1
    assert result.visible_pass_rate == 1.0 and result.visible is not None

    # costs: tokens from the replies' usage, USD from litellm's price map for gpt-4o-mini
    usage = [r["usage"] for r in script]
    cost = result.cost
    assert (cost.tokens_in, cost.tokens_out) == (
        sum(u["prompt_tokens"] for u in usage),
        sum(u["completion_tokens"] for u in usage),
    )
    prices = litellm.model_cost["gpt-4o-mini"]
    expected = (
        cost.tokens_in * prices["input_cost_per_token"] + cost.tokens_out * prices["output_cost_per_token"]
    )
    assert cost.money_usd == pytest.approx(expected) and cost.money_usd > 0
    assert cost.steps == 5 and cost.test_runs == 1  # the visible check after the loop
    assert cost.wall_s >= cost.sandbox_s > 0
    assert result.trajectory[-1] == "exit: Submitted"
    assert result.trajectory[1].startswith("step 2: $ python -m pytest -q tests/test_compare.py -> exit 1")

    # what went over the wire: the key from the environment, the seed, the task, each real observation
    assert len(server.requests) == 5
    assert server.headers[0]["authorization"] == "Bearer sk-test-123"
    first = server.requests[0]
    assert first["model"] == "gpt-4o-mini" and first["seed"] == 7 and first["temperature"] == 0
    assert all(t in first["messages"][1]["content"] for t in task.FAIL_TO_PASS)
    assert server.requests[1]["messages"][-1]["content"].startswith(
        "exit code: 0\n4:def clamp(value, low, high):"
    )
    assert "failed" in server.requests[2]["messages"][-1]["content"]
    assert "+    if value > high:" in server.requests[3]["messages"][-1]["content"]
    assert "6 passed" in server.requests[4]["messages"][-1]["content"]
    assert (result.agent, result.version, result.seed) == ("llm", agent.version, 7)


def test_commands_run_in_a_subshell_without_the_api_key(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    steps = ["cd / && export LEFT=1 && exit 3", "pwd; echo LEFT=$LEFT; env | grep -c sk-test-123", "exit 0"]
    replies = [reply(f"Step.\n\n```bash\n{cmd}\n```") for cmd in steps]
    server = serve([*replies, reply("```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```")])
    result = agent_for(server).run(box, task, "", Budget(), seed=0)
    assert result.status == "ok"
    assert server.requests[1]["messages"][-1]["content"] == "exit code: 3\n"  # `exit` ended only the subshell
    second = server.requests[2]["messages"][-1]["content"]
    assert second.splitlines()[1:] == [box.repo_dir, "LEFT=", "0"]  # fresh cwd and variables, no key
    assert box.run("echo alive").output.strip() == "alive"  # the session itself survived


def test_other_agents_keys_are_hidden_too(
    serve: Any, box: Sandbox, task: TaskInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool's cheap model used to be able to read the strong model's key (``OPENAI_API_KEY``) from the
    local shell, which inherits the host's variables; only its own key's variable was unset."""
    monkeypatch.setenv("OTHER_PROVIDER_API_KEY", "sk-other-456")
    box.run("export OTHER_PROVIDER_API_KEY=sk-other-456")  # as a shell started with it has it
    try:
        steps = ["env | grep -c sk-other-456", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"]
        server = serve([reply(f"Step.\n\n```bash\n{cmd}\n```") for cmd in steps])
        assert agent_for(server).run(box, task, "", Budget(), seed=0).status == "ok"
        assert server.requests[1]["messages"][-1]["content"].splitlines()[1:] == ["0"]
    finally:
        box.run("unset OTHER_PROVIDER_API_KEY")


@pytest.fixture
def swerex_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A real ``swerex-remote`` on 127.0.0.1 with a token; yields its port."""
    exe = shutil.which("swerex-remote", path=str(Path(sys.executable).parent)) or shutil.which(
        "swerex-remote"
    )
    if exe is None:
        pytest.skip("the swerex-remote console script is not installed")
    token, port = uuid.uuid4().hex, free_port()
    monkeypatch.setenv("HRM_TEST_SWEREX_TOKEN", token)
    args = [exe, "--host", "127.0.0.1", "--port", str(port), "--auth-token", token]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # up to a minute for the server to listen
            if proc.poll() is not None:
                pytest.fail(f"swerex-remote exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_the_same_run_on_a_remote_sandbox(
    serve: Any, swerex_port: int, fixture_repo: Any, fixture_task: TaskInstance
) -> None:
    """The adapter only uses the Sandbox's interface, so a remote deployment serves the agent as well."""
    config = SandboxConfig(
        deployment="remote",
        port=swerex_port,
        token_env="HRM_TEST_SWEREX_TOKEN",
        repos_dir=str(Path(fixture_repo.root).parent),
    )
    server = serve(recorded("llm_fix_clamp.json"))
    with Sandbox(config) as remote:
        remote.prepare(fixture_task)
        result = agent_for(server).run(remote, fixture_task, "", Budget(), seed=0)
        assert result.status == "ok" and remote.evaluate(result.patch).resolved
    assert len(server.requests) == 5 and "6 passed" in server.requests[4]["messages"][-1]["content"]


def as_tool_calls(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded text replies as tool-call replies: the bash block becomes a call of the bash tool."""
    out = []
    for i, answer in enumerate(copy.deepcopy(replies)):
        message = answer["choices"][0]["message"]
        thought, _, rest = message["content"].partition("```bash\n")
        call = {"name": "bash", "arguments": json.dumps({"command": rest.rsplit("\n```", 1)[0]})}
        message.update(
            content=thought.strip(), tool_calls=[{"id": f"call_{i}", "type": "function", "function": call}]
        )
        answer["choices"][0]["finish_reason"] = "tool_calls"
        out.append(answer)
    return out


def test_tool_call_format_fixes_the_task(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve(as_tool_calls(recorded("llm_fix_clamp.json")))
    agent = agent_for(server, action_format="tool")
    assert agent.version != agent_for(server).version  # another action format, another agent
    result = agent.run(box, task, "", Budget(), seed=0)
    assert result.status == "ok", result.reason
    assert box.evaluate(result.patch).resolved and result.cost.steps == 5
    first = server.requests[0]
    assert [t["function"]["name"] for t in first["tools"]] == ["bash"]
    assert "bash tool" in first["messages"][0]["content"]
    answer = server.requests[1]["messages"][-1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "call_0"
    assert answer["content"].startswith("exit code: 0\n4:def clamp(value, low, high):")

    server = serve([reply("No tool this time."), *as_tool_calls(recorded("llm_fix_clamp.json"))[4:]])
    result = agent_for(server, action_format="tool").run(box, task, "", Budget(), seed=0)
    assert result.status == "ok" and "Call the bash tool" in server.requests[1]["messages"][-1]["content"]


def test_a_wrong_fix_is_an_unresolved_outcome(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve(recorded("llm_wrong_fix.json"))
    result = agent_for(server).run(box, task, "", Budget(), seed=0)
    assert result.status == "ok" and "+    if value <= low:" in result.patch
    assert result.visible_pass_rate < 1.0
    assert not box.evaluate(result.patch).resolved


def test_step_budget(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve([reply(NEVER_DONE)] * 5)
    result = agent_for(server).run(box, task, "", Budget(max_turns=2), seed=0)
    assert result.status == "budget_exhausted" and "steps" in result.reason
    assert len(server.requests) == 2 and result.cost.steps == 2 and result.patch == ""


def test_usd_budget_with_the_config_price_table(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    # litellm has no price for this model: the agent's table gives 1000 USD per million tokens each way
    server = serve([reply(NEVER_DONE, prompt_tokens=80, completion_tokens=20)] * 6)
    model = "Qwen/Qwen2.5-Coder-7B-Instruct"  # a server's own name, slash included
    agent = agent_for(server, model=model, price_in_per_mtok=1000.0, price_out_per_mtok=1000.0)
    result = agent.run(box, task, "", Budget(max_money_usd=0.25), seed=0)
    assert result.status == "budget_exhausted" and "USD" in result.reason
    assert len(server.requests) == 3  # 0.1 USD a call: checked before each, stops once 0.3 >= 0.25
    assert result.cost.money_usd == pytest.approx(0.3)
    assert server.requests[0]["model"] == model


def test_token_budget(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve([reply(NEVER_DONE, prompt_tokens=300, completion_tokens=50)] * 5)
    result = agent_for(server).run(box, task, "", Budget(max_tokens=600), seed=0)
    assert result.status == "budget_exhausted" and "tokens" in result.reason
    assert len(server.requests) == 2 and result.cost.tokens_in + result.cost.tokens_out == 700


def test_wall_clock_budget_cuts_the_running_command(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve([reply("Waiting for it.\n\n```bash\nsleep 60\n```")] * 3)
    result = agent_for(server).run(box, task, "", Budget(max_wall_s=3.0), seed=0)
    assert result.status == "budget_exhausted" and "wall seconds" in result.reason
    assert len(server.requests) == 1 and "(timed out)" in result.trajectory[0]
    assert result.cost.wall_s >= 3.0
    assert result.visible is None and result.cost.test_runs == 0  # no test run past the budget


def test_endpoint_down_raises_endpoint_error(box: Sandbox, task: TaskInstance) -> None:
    agent = agent_for(None, max_retries=1)
    with pytest.raises(EndpointError, match="unreachable after 2 attempts") as err:
        agent.run(box, task, "", Budget(), seed=0)
    assert is_infrastructure_failure(err.value)


@pytest.mark.slow
def test_collect_stores_the_real_run_and_never_the_endpoint_fault(
    serve: Any, fixture_repo: Any, fixture_task: TaskInstance, tmp_path: Any
) -> None:
    """Through ``collect`` (a worker process): the replayed run is stored with its identity and costs;
    the run against a dead endpoint is a failed job, and nothing of it is in the store."""
    server = serve(recorded("llm_fix_clamp.json"))
    common = {"api_key_env": KEY_ENV, "max_retries": 0, "model": "gpt-4o-mini"}
    specs = [
        AgentSpec(
            "llm-replay", "hrm_spawn.envs.agents.llm:LLMAgent", {**common, "base_url": server.base_url}
        ),
        AgentSpec(
            "llm-down",
            "hrm_spawn.envs.agents.llm:LLMAgent",
            {**common, "base_url": agent_for(None).config.base_url},
        ),
    ]
    register_agent_specs(specs)  # in this process only: the worker builds the agents from the slots' specs
    try:
        store = OutcomeStore(tmp_path / "store.db")
        counts = collect(
            [fixture_task],
            ["llm-replay", "llm-down"],
            store,
            workers=1,
            depth=0,
            sandbox_config=SandboxConfig(allow_host_execution=True),
            progress=False,
        )
    finally:
        unregister_agent_specs(["llm-replay", "llm-down"])
    assert (counts.ran, counts.failed) == (1, 1)
    assert "llm-down" in counts.errors[0] and "unreachable" in counts.errors[0]
    keys = store.keys()
    assert [k.agent for k in keys] == ["llm-replay"]  # the endpoint fault is not an outcome
    key = next(iter(keys))
    assert key.agent_version == build_agent(specs[0]).version
    outcome = store.get(key)
    assert outcome is not None and outcome.evaluation.resolved
    assert (
        outcome.result.cost.tokens_in > 0
        and outcome.result.cost.money_usd > 0
        and outcome.result.cost.steps == 5
    )


def test_server_errors_are_retried_then_raised(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve([{"_status": 500}, {"_status": 503}])
    with pytest.raises(EndpointError, match="HTTP 503 after 2 attempts"):
        agent_for(server, max_retries=1).run(box, task, "", Budget(), seed=0)
    assert len(server.requests) == 2

    server = serve([{"_status": 502}, *recorded("llm_fix_clamp.json")])  # one blip, then the run goes on
    result = agent_for(server, max_retries=1).run(box, task, "", Budget(), seed=0)
    assert result.status == "ok" and len(server.requests) == 6

    server = serve([{"_status": 401}])
    with pytest.raises(EndpointError, match="refused the API key"):
        agent_for(server, max_retries=3).run(box, task, "", Budget(), seed=0)
    assert len(server.requests) == 1  # a refused key is not worth a retry


def test_slow_endpoint_times_out_as_endpoint_error(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    server = serve([{**reply(NEVER_DONE), "_delay_s": 5.0}])
    with pytest.raises(EndpointError, match="did not answer within 0.5 s"):
        agent_for(server, request_timeout_s=0.5).run(box, task, "", Budget(), seed=0)


def test_replies_without_one_command_end_the_run(serve: Any, box: Sandbox, task: TaskInstance) -> None:
    two = "First this:\n```bash\nls\n```\nthen that:\n```bash\npwd\n```"
    server = serve([reply("I think the bug is in clamp."), reply(two), reply("Done, I believe.")])
    result = agent_for(server, max_format_errors=3).run(box, task, "", Budget(), seed=0)
    assert result.status == "error" and "3 replies in a row" in result.reason
    assert "exactly one ```bash block (0 found)" in server.requests[1]["messages"][-1]["content"]
    assert "(2 found)" in server.requests[2]["messages"][-1]["content"]
    assert result.cost.steps == 3 and result.cost.tokens_in == 300


def test_delegation_applies_the_start_patch_and_summarises_it(
    serve: Any, box: Sandbox, task: TaskInstance
) -> None:
    start = agent_for(serve(recorded("llm_wrong_fix.json"))).run(box, task, "", Budget(), seed=0).patch
    box.reset()
    server = serve(recorded("llm_fix_clamp.json"))
    result = agent_for(server).run(box, task, start, Budget(), seed=1)
    intro = server.requests[0]["messages"][1]["content"]
    assert "An earlier attempt" in intro and "calc/compare.py (+1 -1)" in intro
    assert "+    if value <= low:" in intro
    assert f"0 of the {len(task.FAIL_TO_PASS)} failing tests pass" in intro
    # the candidate contains both the earlier change and the fix
    assert "+    if value <= low:" in result.patch and "+    if value > high:" in result.patch
    assert result.cost.test_runs == 2  # the start patch's tests and the visible check


def test_a_start_patch_that_does_not_apply_is_an_error_outcome(box: Sandbox, task: TaskInstance) -> None:
    stale = "--- a/calc/compare.py\n+++ b/calc/compare.py\n@@ -1,1 +1,1 @@\n-no such line\n+x\n"
    result = agent_for(None).run(box, task, stale, Budget(), seed=0)  # fails before any model call
    assert result.status == "error" and "PatchApplyError" in result.reason and result.patch == ""


def test_identity_changes_with_behaviour_only() -> None:
    base = LLMAgent(model="gpt-4o-mini")
    assert base.version.startswith("2+")
    assert LLMAgent(model="gpt-4o").version != base.version  # two models never share outcomes
    assert LLMAgent(model="gpt-4o-mini", temperature=0.7).version != base.version
    assert LLMAgent(model="gpt-4o-mini", system_template="Fix it.").version != base.version
    # where and how the endpoint is reached is not behaviour
    same = LLMAgent(model="gpt-4o-mini", api_key_env="OTHER", request_timeout_s=5, max_retries=0)
    assert same.version == base.version
    local = LLMAgent(model="qwen2.5-coder", base_url="http://127.0.0.1:8000/v1")
    assert local.version == LLMAgent(model="qwen2.5-coder", base_url="http://10.0.0.2:8080/v1").version
    assert (
        local.version != LLMAgent(model="qwen2.5-coder", base_url="http://x/v1", endpoint_family="q4").version
    )
    assert LLMAgent(model="gpt-4o-mini").version == base.version  # stable across instances


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="temprature"):
        LLMConfig.model_validate({"temprature": 0.2})
    with pytest.raises(ValueError, match="max_retries"):
        LLMAgent(max_retries=-1)


def test_cut_middle_keeps_both_ends() -> None:
    text = "\n".join(str(i) for i in range(5000))
    cut = cut_middle(text, 400)
    assert cut.startswith("0\n1\n2\n") and cut.endswith("4998\n4999")
    assert "characters left out" in cut and len(cut) < 460
    assert cut_middle("short", 400) == "short"


def test_litellm_imports_offline() -> None:
    import os

    from hrm_spawn.envs.agents.mini_imports import litellm

    module = litellm()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"  # no fetch of the price map at import
    assert "gpt-4o-mini" in module.model_cost
