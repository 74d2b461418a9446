"""Fork plumbing: run pytest in a forked child and get its per-test outcomes back through a pipe.

The pytest options, the repository pinned as pytest's rootdir, the recorder plugin (outcomes, failure
text, optionally per-test covered lines), a fork with a timeout that kills the child's process group, and
the warm-up that imports into the parent what the first child imported, so later children start warm.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import sys
import tempfile
import time

# This package's folder: its frames are never repository code, even when it is shipped inside the repository.
OWN_DIR = os.path.dirname(os.path.realpath(__file__))
PYTEST_ARGS = [
    "-q",
    "--color=no",
    "-p",
    "no:cacheprovider",
    "-o",
    "addopts=",
    "-W",
    "ignore::DeprecationWarning",
]
# Built-in plugins that cannot change a verdict without their own options; skipping them saves start-up.
PYTEST_ARGS += [
    arg
    for name in ("pastebin", "junitxml", "stepwise", "setuponly", "setupplan")
    for arg in ("-p", f"no:{name}")
]
READ_CHUNK = 1 << 16
_INI_FILES = (
    ("pytest.ini", ""),
    (".pytest.ini", ""),
    ("pyproject.toml", "[tool.pytest.ini_options]"),
    ("tox.ini", "[pytest]"),
    ("setup.cfg", "[tool:pytest]"),
)


def _has_own_config(root: str) -> bool:
    """Whether the repository configures pytest itself (else pytest would climb to a parent's config)."""
    for name, section in _INI_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            if not section:
                return True
            with open(path, encoding="utf-8", errors="replace") as fh:
                if section in fh.read():
                    return True
    return False


def pin_rootdir(root: str) -> None:
    """Test ids relative to the repository, whatever folder it sits in: without its own pytest config,
    pytest takes the nearest parent's (a checkout inside another project gets that project's rootdir,
    its ids and its options), so the repository is named as rootdir with an empty config."""
    PYTEST_ARGS.extend([f"--rootdir={root}"])
    if not _has_own_config(root):
        ini = os.path.join(tempfile.mkdtemp(prefix="hrm-spawn-ini-"), "pytest.ini")
        with open(ini, "w", encoding="utf-8") as fh:
            fh.write("[pytest]\n")
        PYTEST_ARGS.extend(["-c", ini])


def is_test_file(path: str) -> bool:
    """A test module or conftest by its path (``localize`` uses the same rule; this package is stdlib-only
    so that it runs standalone in the sandbox)."""
    parts = path.replace("\\", "/").split("/")
    base = parts[-1]
    return (
        base.startswith("test_")
        or base.endswith("_test.py")
        or base == "conftest.py"
        or "tests" in parts[:-1]
        or "test" in parts[:-1]
    )


def send(out_fd: int, payload: dict) -> None:
    """Write the child's JSON down the pipe and leave at once (no atexit, no pytest unconfigure)."""
    view = memoryview(json.dumps(payload).encode())
    while view:
        view = view[os.write(out_fd, view[:READ_CHUNK]) :]
    os._exit(0)


def _loaded_modules(root: str) -> list[str]:
    return sorted(name for name, mod in list(sys.modules.items()) if not _in_repo(mod, root))


def make_recorder(pytest, root: str, coverage: bool, skip_dir: str = "", out_fd: int = -1):
    """A pytest plugin that records per-test outcomes, failure text and (optionally) covered lines."""

    class Recorder:
        def __init__(self) -> None:
            self.status: dict[str, str] = {}
            self.failures: dict[str, str] = {}
            self.coverage: dict[str, dict[str, list[int]]] = {}
            self.collect_errors: list[str] = []
            self._source: dict[str, str | None] = {}

        def _rel(self, filename: str) -> str | None:
            rel = self._source.get(filename, "")
            if rel == "":
                absolute = os.path.abspath(filename)
                inside = absolute.startswith(root + os.sep) and absolute.endswith(".py")
                rel = os.path.relpath(absolute, root) if inside else None
                mine = skip_dir and absolute.startswith(skip_dir + os.sep)  # the validator's own folder
                rel = None if rel is None or mine or is_test_file(rel) else rel
                self._source[filename] = rel
            return rel

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):
            if not coverage:
                yield
                return
            hits: set[tuple[str, int]] = set()

            def local(frame, event, arg):
                if event == "line":
                    hits.add((frame.f_code.co_filename, frame.f_lineno))
                return local

            def tracer(frame, event, arg):
                if self._rel(frame.f_code.co_filename) is None:
                    return None
                hits.add((frame.f_code.co_filename, frame.f_lineno))
                return local

            sys.settrace(tracer)
            try:
                yield
            finally:
                sys.settrace(None)
            lines: dict[str, list[int]] = {}
            for filename, line in hits:
                lines.setdefault(self._rel(filename), []).append(line)
            self.coverage[item.nodeid] = {f: sorted(v) for f, v in lines.items()}

        def payload(self, exit_code: int) -> dict:
            return {
                "exit_code": exit_code,
                "status": self.status,
                "failures": self.failures,
                "coverage": self.coverage,
                "collect_errors": self.collect_errors,
                "modules": _loaded_modules(root),
            }

        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(self, session, exitstatus):
            # every test and fixture teardown is done: answer now and skip pytest's slow unconfigure
            if out_fd >= 0:
                send(out_fd, self.payload(int(exitstatus)))

        def pytest_collectreport(self, report):
            if report.failed:
                self.collect_errors.append(f"{report.nodeid}: {report.longreprtext[-2000:]}")

        def pytest_runtest_logreport(self, report):
            nodeid, current = report.nodeid, self.status.get(report.nodeid)
            if report.when == "setup":
                if report.failed:
                    self.status[nodeid] = "ERROR"
                elif report.skipped:
                    self.status[nodeid] = "XFAIL" if hasattr(report, "wasxfail") else "SKIPPED"
            elif report.when == "call":
                if report.passed:
                    self.status[nodeid] = "PASSED"
                elif report.skipped:
                    self.status[nodeid] = "XFAIL" if hasattr(report, "wasxfail") else "SKIPPED"
                else:
                    self.status[nodeid] = "FAILED"
            elif report.failed and current in (None, "PASSED"):
                self.status[nodeid] = "ERROR"  # teardown error
            if report.failed:
                self.failures[nodeid] = report.longreprtext[-6000:]

    return Recorder()


def _child(pytest, root: str, test_ids: list[str], coverage: bool, tb: str, out_fd: int) -> None:
    """Runs in the forked child: pytest on ``test_ids``, then the JSON result down the pipe."""
    os.setpgid(0, 0)  # so a timeout can kill anything the tests started too
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    recorder = make_recorder(pytest, root, coverage, OWN_DIR, out_fd)
    try:
        code = pytest.main([*PYTEST_ARGS, f"--tb={tb}", *test_ids], plugins=[recorder])
        payload = recorder.payload(int(code))  # only when the session never finished (usage error, ...)
    except BaseException as exc:  # the child must always answer
        payload = {"exit_code": -1, "status": {}, "error": f"{type(exc).__name__}: {exc}"}
    send(out_fd, payload)


def run_forked(
    pytest, root: str, test_ids: list[str], timeout_s: float, coverage: bool = False, tb: str = "no"
) -> dict:
    """Fork, run the tests in the child, collect its JSON; kill it (and its group) on timeout."""
    if not test_ids:
        return {"exit_code": 0, "status": {}, "seconds": 0.0}
    return fork_and_await(lambda out_fd: _child(pytest, root, test_ids, coverage, tb, out_fd), timeout_s)


def fork_and_await(child, timeout_s: float, close: tuple = ()) -> dict:
    """Fork; the child closes ``close``, runs ``child(out_fd)`` (which answers with ``send`` and exits);
    the parent returns its JSON, killing it (and its process group) on timeout."""
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        for fd in close:
            os.close(fd)
        child(write_fd)
        os._exit(1)  # not reached: child answers with send, which exits
    os.close(write_fd)
    return _await_child(pid, read_fd, start, timeout_s)


def read_until(fd: int, deadline: float, done) -> tuple[bytes, bool]:
    """Read ``fd`` until ``done(data)``, end of file or the deadline; (data, timed_out)."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return b"".join(chunks), True
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            if done(chunk):
                return b"".join(chunks), False


def kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(OSError):
            target()


def _await_child(pid: int, read_fd: int, start: float, timeout_s: float) -> dict:
    """The child's JSON (it closes the pipe by exiting); on timeout kill it with its process group."""
    data, timed_out = read_until(read_fd, start + timeout_s, lambda chunk: False)
    os.close(read_fd)
    if timed_out:
        kill(pid)
    os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    if timed_out:
        return {"exit_code": -9, "status": {}, "timed_out": True, "seconds": seconds}
    try:
        result = json.loads(data)
    except json.JSONDecodeError:  # nothing or half of it: the tests crashed the child (os._exit, a signal)
        result = {"exit_code": -1, "status": {}, "error": "child died without a result"}
    result.setdefault("status", {})
    result["seconds"] = seconds
    return result


def warm_up(root: str, modules: list[str]) -> None:
    """Import what the child imported from outside the repository, then drop any repository module."""
    for name in modules:
        if name in sys.modules or name == "__main__":
            continue
        with contextlib.suppress(BaseException):  # one that only imports inside pytest: leave it cold
            importlib.import_module(name)
    for name, mod in list(sys.modules.items()):
        if _in_repo(mod, root) and not _in_repo(mod, OWN_DIR):  # shipped inside it, but not its code
            del sys.modules[name]


def _in_repo(mod, root: str) -> bool:
    paths = [getattr(mod, "__file__", None) or "", *list(getattr(mod, "__path__", None) or [])]
    return any(str(p).startswith(root + os.sep) for p in paths)
