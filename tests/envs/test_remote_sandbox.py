"""Remote sandboxes against a real ``swerex-remote`` server started on 127.0.0.1 by the test.

Faults injected for real: the server killed mid-command and restarted, restarted between calls, shared
by two sandboxes at once; plus the client's refusals (no token) and warnings (plain HTTP off this host).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

from hrm_spawn.envs.failures import TransportError, is_infrastructure_failure
from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig, SandboxError, _make_deployment

TOKEN_ENV = "HRM_TEST_SWEREX_TOKEN"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One ``swerex-remote`` process on 127.0.0.1:port; can be killed and started again on the same port."""

    def __init__(self, token: str):
        self.token, self.port = token, _free_port()
        exe = shutil.which("swerex-remote", path=str(Path(sys.executable).parent)) or shutil.which(
            "swerex-remote"
        )
        self.command = [exe] if exe else [sys.executable, "-m", "swerex.server"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--auth-token", self.token]
        self.proc = subprocess.Popen(
            [*self.command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"swerex-remote exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        pytest.fail("swerex-remote did not listen within 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no goodbye to the clients
            self.proc.wait(timeout=10)


@pytest.fixture
def server(monkeypatch):
    srv = Server(uuid.uuid4().hex)
    monkeypatch.setenv(TOKEN_ENV, srv.token)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def remote_config(server, fixture_repo) -> SandboxConfig:
    return SandboxConfig(
        deployment="remote",
        port=server.port,
        token_env=TOKEN_ENV,
        repos_dir=str(Path(fixture_repo.root).parent),
    )


@pytest.mark.slow
def test_remote_sandbox_against_a_real_server(remote_config, fixture_task, fix):
    with Sandbox(remote_config) as sb:
        sb.prepare(fixture_task)
        assert sb.evaluate(fix).resolved
        result = sb.run("sleep 60", timeout_s=1.0)
        assert result.timed_out and sb.run("echo remote-ok").output == "remote-ok"
    bad = remote_config.model_copy(update={"token_env": "HRM_TEST_WRONG_TOKEN"})
    os.environ["HRM_TEST_WRONG_TOKEN"] = "wrong"
    try:
        with Sandbox(bad) as sb, pytest.raises(SandboxError, match="remote"):
            sb.prepare(fixture_task)
    finally:
        del os.environ["HRM_TEST_WRONG_TOKEN"]


@pytest.mark.slow
def test_two_sandboxes_share_one_server(remote_config, fixture_task, fix):
    with Sandbox(remote_config) as first, Sandbox(remote_config) as second:
        first.prepare(fixture_task)
        second.prepare(fixture_task)
        assert first._session != second._session and first.repo_dir != second.repo_dir
        first.run("export ONLY_FIRST=1; cd calc")
        assert second.run("echo ${ONLY_FIRST:-unset}; pwd").output.splitlines() == ["unset", second.repo_dir]
        first.write_file("calc/compare.py", "broken = True\n")
        assert second.diff() == ""  # separate work copies
        # Both at once from two threads (each Sandbox has its own event loop): answers never cross.
        answers: dict[str, str] = {}
        threads = [
            threading.Thread(
                target=lambda sb=sb, name=name: answers.update({name: sb.run(f"sleep 1; echo {name}").output})
            )
            for sb, name in ((first, "first"), (second, "second"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert answers == {"first": "first", "second": "second"}
        assert second.evaluate(fix).resolved
        first.close()  # ends only its own session
        assert second.run("echo still-here").output == "still-here"
        assert second.evaluate(fix).resolved


@pytest.mark.slow
def test_server_killed_mid_command_then_restarted(server, remote_config, fixture_task, fix):
    with Sandbox(remote_config) as sb:
        sb.prepare(fixture_task)
        sb.write_file("calc/compare.py", "broken = True\n")
        killer = threading.Timer(1.0, server.kill)
        killer.start()
        with pytest.raises(TransportError) as info:
            sb.run("sleep 30")
        killer.join()
        assert is_infrastructure_failure(info.value)
        with pytest.raises(TransportError):  # still down: the next call fails the same way, quickly
            sb.run("echo down")
        server.start()
        sb.reset()  # reconnects, opens a new session, prepares the task again
        assert sb.run("echo back").output == "back"
        assert sb.diff() == "" and sb.evaluate(fix).resolved

        server.kill()  # restarted between two calls: the session is gone (SessionDoesNotExistError)
        server.start()
        with pytest.raises(TransportError, match="SessionDoesNotExist"):
            sb.run("echo lost")
        assert sb.run("echo found").output == "found"


def test_remote_refuses_an_empty_token(monkeypatch, fixture_task):
    monkeypatch.setenv("HRM_TEST_EMPTY_TOKEN", "  ")
    config = SandboxConfig(deployment="remote", token_env="HRM_TEST_EMPTY_TOKEN", repos_dir="/x")
    with Sandbox(config) as sb, pytest.raises(SandboxError, match="HRM_TEST_EMPTY_TOKEN.*empty"):
        sb.prepare(fixture_task)


def test_remote_warns_on_plain_http_off_this_host(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    with pytest.warns(RuntimeWarning, match="plain HTTP"):
        _make_deployment(SandboxConfig(deployment="remote", host="10.1.2.3", token_env=TOKEN_ENV), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for host in ("127.0.0.1", "localhost", "http://[::1]", "https://10.1.2.3"):
            _make_deployment(SandboxConfig(deployment="remote", host=host, token_env=TOKEN_ENV), None)


def test_client_timeouts_outlast_the_test_timeout(monkeypatch):
    from swerex.runtime.abstract import BashAction, ReadFileRequest

    monkeypatch.setenv(TOKEN_ENV, "t")
    config = SandboxConfig(deployment="remote", token_env=TOKEN_ENV, test_timeout_s=300)
    deployment = _make_deployment(config, None)
    asyncio.run(deployment.start())
    runtime = deployment.runtime
    test_run = BashAction(command="pytest", session="s", timeout=300 + 1.5)
    # aiohttp's default total timeout is 300 s; a test run may also queue behind another client's.
    assert runtime.request_timeout_s(test_run) >= 300 + 1.5 + 300
    assert runtime.request_timeout_s(ReadFileRequest(path="/x")) > 300
