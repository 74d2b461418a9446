"""A ``swerex-remote`` server shared by many sandboxes: a deployment that leaves other clients alone.

SWE-ReX's own ``RemoteDeployment`` has two habits that break sharing: ``stop()`` posts ``/close``, which
ends *every* session on the server, and its requests run under aiohttp's default 300 s total timeout,
which loses the race with a 300 s test run (and with other clients' commands, which the single-threaded
server runs one at a time). Here ``stop()`` only forgets the connection (the sandbox closes its own
session), and each request may take its own command timeout plus ``wait_s``.
"""

from __future__ import annotations

import ipaddress
import uuid
import warnings
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel
from swerex.exceptions import DeploymentNotStartedError
from swerex.runtime.remote import RemoteRuntime

CONNECT_TIMEOUT_S = 10.0  # an unreachable host fails fast; a busy server may still take long to answer


class SharedRemoteRuntime(RemoteRuntime):
    """RemoteRuntime whose requests wait for their own timeout plus ``wait_s``, never aiohttp's 300 s."""

    def __init__(self, *, wait_s: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.wait_s = wait_s

    def request_timeout_s(self, payload: BaseModel | None) -> float:
        own = getattr(payload, "timeout", None) or 0.0
        return float(own) + self.wait_s

    async def _request(
        self, endpoint: str, payload: BaseModel | None, output_class: Any, num_retries: int = 0
    ):
        # No retries: a request that ran half way must not run twice; the sandbox recovers instead.
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s(payload), sock_connect=CONNECT_TIMEOUT_S)
        headers = {**self._headers, "X-Request-ID": str(uuid.uuid4())}
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.post(
                f"{self._api_url}/{endpoint}",
                json=payload.model_dump() if payload else None,
                headers=headers,
            ) as response,
        ):
            await self._handle_response_errors(response)
            return output_class(**await response.json())


class SharedRemoteDeployment:
    """The deployment interface the Sandbox uses (start, stop, runtime) over a shared server."""

    def __init__(self, host: str, port: int, token: str, wait_s: float):
        self.host, self.port, self.token, self.wait_s = host, port, token, wait_s
        self._runtime: SharedRemoteRuntime | None = None

    @property
    def runtime(self) -> SharedRemoteRuntime:
        if self._runtime is None:
            raise DeploymentNotStartedError()
        return self._runtime

    async def start(self) -> None:
        self._runtime = SharedRemoteRuntime(
            auth_token=self.token,
            host=self.host,
            port=self.port,
            timeout=CONNECT_TIMEOUT_S,
            wait_s=self.wait_s,
        )

    async def stop(self) -> None:
        self._runtime = None  # never /close: other clients' sessions live on the same server


def remote_url(host: str) -> str:
    """``host`` with a scheme; warns when plain HTTP would carry the token off this machine."""
    url = host if "://" in host else f"http://{host}"
    parts = urlsplit(url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        warnings.warn(
            f"remote sandbox: {url} is plain HTTP to a host that is not this machine; the auth token and "
            "every command travel unencrypted (use https://, or an SSH tunnel to 127.0.0.1)",
            RuntimeWarning,
            stacklevel=3,
        )
    return url


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
