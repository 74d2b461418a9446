"""The LLM agent against recorded chat-completion responses served on 127.0.0.1 through the real openai client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai")

from hrm_spawn.envs.agents.llm import LLMAgent, extract_command  # noqa: E402
from hrm_spawn.envs.repos import RepoEnv  # noqa: E402
from hrm_spawn.envs.results import Budget  # noqa: E402
from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig  # noqa: E402
from hrm_spawn.envs.tasks import TaskInstance  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
BUG = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a + b\n+    return a - b\n"


@pytest.fixture(autouse=True)
def _home(hrm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a reply still sleeping for the slow-endpoint test must not hold up teardown

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The slow-endpoint test's client gives up before the reply is written: that broken pipe is the
        # point of the test, not an error worth a traceback in the test log.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class Endpoint:
    """A chat-completions server replaying scripted replies in order and keeping the requests it got."""

    def __init__(self, replies: list[Any], delay_s: float = 0.0):
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(body)
                endpoint.headers.append({k.lower(): v for k, v in self.headers.items()})
                time.sleep(delay_s)
                status, reply = 200, endpoint.replies.pop(0) if endpoint.replies else None
                if reply is None or (isinstance(reply, dict) and "_status" in reply):
                    status = reply["_status"] if reply else 500
                    reply = {"error": {"message": "scripted failure", "type": "server_error", "code": None}}
                data = json.dumps(reply).encode()
                self.send_response(status if self.path == "/v1/chat/completions" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def recorded(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def serve() -> Iterator[Any]:
    endpoints: list[Endpoint] = []

    def start(replies: list[Any], delay_s: float = 0.0) -> Endpoint:
        endpoints.append(Endpoint(replies, delay_s))
        return endpoints[-1]

    yield start
    for endpoint in endpoints:
        endpoint.close()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A real local Sandbox on a tiny built repository (data_dir()/repos/calc), prepared once at the buggy state."""
    home = tmp_path_factory.mktemp("llm_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        yield from _prepare(home)


def _prepare(home: Path) -> Iterator[Sandbox]:
    root = home / "repos" / "calc"
    repo = root / "checkout"
    repo.mkdir(parents=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "clean"], cwd=repo, check=True)
    RepoEnv(
        name="calc", source=str(repo), root=str(root), python=sys.executable, test_paths=["test_calc.py"]
    ).save()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the one-time "runs on this host" warning
        box = Sandbox(SandboxConfig(deployment="local", allow_host_execution=True))
        box.prepare(TASK)
    yield box
    box.close()


@pytest.fixture
def sandbox(prepared: Sandbox) -> Sandbox:
    """What Agent.run receives: the prepared sandbox, reset to the buggy state."""
    prepared.reset()
    return prepared


TASK = TaskInstance(
    instance_id="calc.op_flip__1",
    repo="calc",
    patch=BUG,
    FAIL_TO_PASS=["test_calc.py::test_add"],
    PASS_TO_PASS=[],
    image_name="",
    problem_statement="add(2, 3) returns -1",
)


def agent_for(endpoint: Endpoint, **over: Any) -> LLMAgent:
    config = {
        "base_url": endpoint.base_url,
        "model": "gpt-4o-mini",
        "api_key_env": "TEST_LLM_KEY",
        "price_in_per_mtok": 0.15,
        "price_out_per_mtok": 0.60,
        "max_retries": 0,
    }
    return LLMAgent(**{**config, **over})


def test_fixes_the_bug_through_the_real_client(serve: Any, sandbox: Sandbox) -> None:
    script = recorded("llm_fix_calc.json")
    endpoint = serve(script)
    result = agent_for(endpoint).run(sandbox, TASK, "", Budget(max_turns=10), seed=7)

    assert result.status == "ok", result.reason
    assert "-    return a - b\n+    return a + b" in result.patch
    assert (result.agent, result.version, result.seed) == ("llm", "1", 7)
    usage = [r["usage"] for r in script]
    assert result.cost.tokens_in == sum(u["prompt_tokens"] for u in usage)
    assert result.cost.tokens_out == sum(u["completion_tokens"] for u in usage)
    expected_usd = (result.cost.tokens_in * 0.15 + result.cost.tokens_out * 0.60) / 1e6
    assert result.cost.money_usd == pytest.approx(expected_usd)
    assert result.cost.sandbox_s > 0
    assert len(result.trajectory) == 4 and result.trajectory[-1] == "turn 4: SUBMIT"

    # what went over the wire: the key from the environment, the task, and each real observation
    assert len(endpoint.requests) == 4
    assert endpoint.headers[0]["authorization"] == "Bearer sk-test-123"
    first = endpoint.requests[0]
    assert first["model"] == "gpt-4o-mini" and first["seed"] == 7
    assert "add(2, 3) returns -1" in first["messages"][1]["content"]
    assert "test_calc.py::test_add" in first["messages"][1]["content"]
    assert (
        endpoint.requests[1]["messages"][-1]["content"].rstrip()
        == "exit code: 0\ndef add(a, b):\n    return a - b"
    )
    assert endpoint.requests[3]["messages"][-1]["content"].rstrip() == "exit code: 0\n5"


def test_turn_and_token_budgets_stop_the_loop(serve: Any, sandbox: Sandbox) -> None:
    endpoint = serve(recorded("llm_never_submits.json"))
    result = agent_for(endpoint).run(sandbox, TASK, "", Budget(max_turns=2), seed=0)
    assert result.status == "budget_exhausted" and "2 turns" in result.reason
    assert len(endpoint.requests) == 2 and result.patch == ""

    endpoint = serve(recorded("llm_never_submits.json"))
    result = agent_for(endpoint, max_turns=10).run(sandbox, TASK, "", Budget(max_tokens=400), seed=0)
    # 200+12 tokens after the first reply, 472 after the second: the budget is checked before each request
    assert result.status == "budget_exhausted" and len(endpoint.requests) == 2
    assert result.cost.tokens_in + result.cost.tokens_out == 484

    endpoint = serve(recorded("llm_never_submits.json"))
    result = agent_for(endpoint, max_turns=1).run(sandbox, TASK, "", Budget(), seed=0)
    assert result.status == "budget_exhausted" and len(endpoint.requests) == 1


def test_start_patch_is_applied_and_kept(serve: Any, sandbox: Sandbox) -> None:
    start = (
        "diff --git a/notes.txt b/notes.txt\nnew file mode 100644\n--- /dev/null\n+++ b/notes.txt\n"
        "@@ -0,0 +1 @@\n+partial fix from another agent\n"
    )
    endpoint = serve(recorded("llm_fix_calc.json"))
    result = agent_for(endpoint).run(sandbox, TASK, start, Budget(), seed=0)
    assert result.status == "ok"
    assert "+partial fix from another agent" in result.patch and "+    return a + b" in result.patch


def test_unreachable_endpoint_is_an_error_not_a_crash(sandbox: Sandbox) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = LLMAgent(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, request_timeout_s=5)
    result = agent.run(sandbox, TASK, "", Budget(), seed=0)
    assert result.status == "error"
    assert result.reason.startswith(f"endpoint unreachable: http://127.0.0.1:{port}/v1")
    assert result.patch == "" and result.cost.tokens_in == 0


def test_http_error_and_slow_endpoint(serve: Any, sandbox: Sandbox) -> None:
    endpoint = serve([{"_status": 500}])
    result = agent_for(endpoint).run(sandbox, TASK, "", Budget(), seed=0)
    assert result.status == "error" and "HTTP 500" in result.reason

    endpoint = serve([{"_status": 401}])
    result = agent_for(endpoint).run(sandbox, TASK, "", Budget(), seed=0)
    assert result.status == "error" and "$TEST_LLM_KEY" in result.reason

    endpoint = serve(recorded("llm_fix_calc.json"), delay_s=5.0)
    started = time.monotonic()
    result = agent_for(endpoint, request_timeout_s=0.3).run(sandbox, TASK, "", Budget(), seed=0)
    assert result.status == "timeout" and "0.3 s" in result.reason
    assert time.monotonic() - started < 4.0  # gave up on the request, did not wait for the reply


def test_reply_without_command_or_usage(serve: Any, sandbox: Sandbox) -> None:
    chatty, submit = recorded("llm_fix_calc.json")[0], recorded("llm_fix_calc.json")[3]
    chatty = {
        **chatty,
        "choices": [{**chatty["choices"][0], "message": {"role": "assistant", "content": "Hmm."}}],
    }
    del chatty["usage"]
    endpoint = serve([chatty, submit])
    result = agent_for(endpoint).run(sandbox, TASK, "", Budget(), seed=0)
    assert result.status == "ok" and result.patch == ""
    assert "No command found" in endpoint.requests[1]["messages"][-1]["content"]
    assert result.cost.tokens_in == submit["usage"]["prompt_tokens"]
    assert any("no token usage" in line for line in result.trajectory)


def test_command_timeout_and_long_output_go_back_to_the_model(serve: Any, sandbox: Sandbox) -> None:
    base = recorded("llm_never_submits.json")[0]

    def says(text: str) -> dict[str, Any]:
        return {
            **base,
            "choices": [{**base["choices"][0], "message": {"role": "assistant", "content": text}}],
        }

    endpoint = serve([says("```bash\nsleep 5\n```"), says("```bash\nseq 1 5000\n```"), says("SUBMIT")])
    result = agent_for(endpoint, command_timeout_s=0.5, max_observation_chars=400).run(
        sandbox, TASK, "", Budget(), seed=0
    )
    assert result.status == "ok"
    assert endpoint.requests[1]["messages"][-1]["content"].startswith("timed out: stopped after 0.5 s")
    long_output = endpoint.requests[2]["messages"][-1]["content"]
    assert long_output.startswith("exit code: 0\n1\n2\n") and long_output.rstrip().endswith("4999\n5000")
    assert "characters cut" in long_output and len(long_output) < 500


def test_extract_command() -> None:
    assert extract_command("do this\n```bash\nls -la\n```\nthen") == "ls -la"
    assert extract_command("```\ngit status\n```") == "git status"
    assert extract_command("```python\nprint(1)\n```") is None
    assert extract_command("SUBMIT") is None
