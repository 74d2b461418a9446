"""An OpenAI-compatible chat-completions server on 127.0.0.1 that replays recorded completions.

``ReplayServer(replies)`` answers each ``POST /v1/chat/completions`` with the next reply, in order, and
keeps every request it got (body and headers) for the test to inspect. A reply ``{"_status": 500}``
answers with that HTTP status instead; ``{"_delay_s": 3, ...}`` waits before answering. When the replies
run out the server answers HTTP 500, so a loop that asks too often fails loudly.
"""

from __future__ import annotations

import copy
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(name: str) -> list[dict[str, Any]]:
    """The replies of a fixture file: a JSON list of chat-completion responses."""
    return json.loads((FIXTURES / name).read_text())


def reply(content: str, prompt_tokens: int = 100, completion_tokens: int = 20) -> dict[str, Any]:
    """A chat-completion response saying ``content``."""
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "replay",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (for the endpoint-down tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a reply still sleeping for a timeout test must not hold up teardown

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) leaves a broken pipe: that is the point, not an error.
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            return
        super().handle_error(request, client_address)


class ReplayServer:
    def __init__(self, replies: list[dict[str, Any]]):
        self.replies = [copy.deepcopy(r) for r in replies]
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    answer = server.replies.pop(0) if server.replies else {"_status": 500}
                time.sleep(float(answer.pop("_delay_s", 0.0)))
                status = int(answer.pop("_status", 200))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status, answer = 404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
                elif status != 200:
                    answer = {
                        "error": {"message": "scripted failure", "type": "server_error", "code": status}
                    }
                data = json.dumps(answer).encode()
                self.send_response(status)
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

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
