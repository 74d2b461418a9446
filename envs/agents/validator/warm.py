"""The warm session: a child that runs one pytest session on the buggy tree, collects once, and then
serves candidates, forking a grandchild per candidate that swaps in the changed functions' code.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import threading
import time

from .forking import OWN_DIR, PYTEST_ARGS, READ_CHUNK, fork_and_await, kill, make_recorder, read_until, send
from .livecode import LiveCode, TraceFrom, reorder


def _write_line(fd: int, payload: dict) -> None:
    view = memoryview(json.dumps(payload).encode() + b"\n")
    while view:
        view = view[os.write(fd, view[:READ_CHUNK]) :]


def _make_driver(pytest, job: dict, live: LiveCode, recorder, req_fd: int, rep_fd: int):
    """A plugin that takes over pytest's run loop: report readiness, then serve candidate requests."""

    class Driver:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtestloop(self, session):
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type]
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TraceFrom)]
            items = {item.nodeid: item for item in session.items}
            wanted = [*job.get("f2p", []), *job.get("p2p", [])]
            missing = [t for t in wanted if t not in items]
            if session.testsfailed or recorder.collect_errors or missing or len(items) != len(session.items):
                why = f"collection: errors {recorder.collect_errors[:2]}, unmatched ids {missing[:3]}"
                _write_line(rep_fd, {"ready": False, "why": why})
                os._exit(0)
            live.snapshot()
            gc.collect()
            gc.freeze()  # the session's objects stay out of the grandchildren's collections: fewer copied pages
            _write_line(rep_fd, {"ready": True, "items": len(items)})
            _serve(session, job, live, recorder, req_fd, rep_fd)
            os._exit(0)

    return Driver()


def _serve(session, job: dict, live: LiveCode, recorder, req_fd: int, rep_fd: int) -> None:
    """Answer {"i": candidate, "phase": "f2p"|"p2p"} lines until "quit" or end of file."""
    timeout_s = float(job.get("timeout_s", 30.0))
    plans: dict[int, list | str] = {}
    with os.fdopen(req_fd, "rb", closefd=False) as requests:
        for line in requests:
            request = json.loads(line)
            if request.get("quit"):
                return
            index = int(request["i"])
            if index not in plans:
                plans[index] = live.swaps(job["candidates"][index]["files"])
            plan = plans[index]
            if isinstance(plan, str):
                _write_line(rep_fd, {"fresh": plan})
                continue
            ids = set(job.get(request["phase"], []))
            items = [item for item in session.items if item.nodeid in ids]
            _write_line(rep_fd, _run_swapped(session, items, plan, recorder, timeout_s, (req_fd, rep_fd)))


def _run_swapped(session, items: list, plan: list, recorder, timeout_s: float, close: tuple) -> dict:
    """Fork a grandchild that swaps in the new code and runs ``items`` as pytest's own loop would."""
    if not items:
        return {"exit_code": 0, "status": {}, "seconds": 0.0}

    def child(out_fd: int) -> None:
        os.setpgid(0, 0)  # so a timeout can kill anything the tests started too
        payload = {"exit_code": 0}
        try:
            for target, change in plan:  # new code for a function, or a new order for a namespace
                if isinstance(target, dict):
                    reorder(target, change)
                else:
                    target.__code__ = change
            for i, item in enumerate(items):
                nextitem = items[i + 1] if i + 1 < len(items) else None
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                if session.shouldfail or session.shouldstop:
                    break
            payload["exit_code"] = int(session.testsfailed > 0)
        except BaseException as exc:  # pytest.exit, an internal error: keep what ran, as pytest would
            payload = {"exit_code": 2, "interrupted": f"{type(exc).__name__}: {exc}"[:500]}
        send(out_fd, {**payload, "status": recorder.status, "failures": recorder.failures})

    return fork_and_await(child, timeout_s, close)


def _session_child(pytest, root: str, job: dict, req_fd: int, rep_fd: int) -> None:
    """The warm session's process: one pytest session on the buggy tree whose run loop is the server."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        watched = {os.path.realpath(p) for cand in job.get("candidates", []) for p in cand["files"]}
        live = LiveCode(watched)
        recorder = make_recorder(pytest, root, False, OWN_DIR)
        driver = _make_driver(pytest, job, live, recorder, req_fd, rep_fd)
        ids = list(dict.fromkeys([*job.get("f2p", []), *job.get("p2p", [])]))
        sys.meta_path.insert(0, TraceFrom(live, root))  # which watched code runs at import and collection
        pytest.main([*PYTEST_ARGS, "--tb=no", *ids], plugins=[recorder, driver])
        why = "pytest ended before its run loop"
    except BaseException as exc:
        why = f"{type(exc).__name__}: {exc}"
    sys.settrace(None)
    with contextlib.suppress(OSError):
        _write_line(rep_fd, {"ready": False, "why": why[:500]})
    os._exit(0)


class WarmSession:
    """The parent's handle on the warm session: start it, ask it to run a candidate, close it."""

    def __init__(self, pytest, root: str, job: dict, timeout_s: float, start_s: float) -> None:
        self.timeout_s = timeout_s
        self.why = ""
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.req_w)
            os.close(self.rep_r)
            _session_child(pytest, root, job, req_r, rep_w)
        os.close(req_r)
        os.close(rep_w)
        self._buffer = b""
        ready = self._reply(start_s)
        if not (ready or {}).get("ready"):
            self.close((ready or {}).get("why", "no answer while collecting"))

    @property
    def alive(self) -> bool:
        return self.pid > 0

    def _reply(self, timeout_s: float) -> dict | None:
        data, timed_out = read_until(
            self.rep_r, time.perf_counter() + timeout_s, lambda chunk: b"\n" in chunk
        )
        self._buffer += data
        if timed_out or b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def ask(self, index: int, phase: str) -> dict | None:
        """The candidate's result, {"fresh": why} when it needs a fresh import, None if the session died."""
        try:
            _write_line(self.req_w, {"i": index, "phase": phase})
            answer = self._reply(self.timeout_s + 30.0)
        except (OSError, ValueError):
            answer = None
        if answer is None:
            self.close("the warm session stopped answering")
        return answer

    def close(self, why: str = "") -> None:
        if self.pid <= 0:
            return
        self.why = self.why or why
        with contextlib.suppress(OSError):
            _write_line(self.req_w, {"quit": True})
        for fd in (self.req_w, self.rep_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        deadline = time.perf_counter() + 5.0
        while os.waitpid(self.pid, os.WNOHANG)[0] == 0:  # reaped, so its CPU counts in os.times()
            if time.perf_counter() > deadline:
                kill(self.pid)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.005)
        self.pid = -1
