"""Warm fork validator: one process imports pytest, then forks a child per candidate.

Standalone (stdlib + pytest): the repair agent copies this file into the sandbox and runs it with the
sandbox's interpreter, ``python worker.py job.json result.json``, inside the repository.

The parent never imports the repository's own modules, so every child imports the candidate's code
fresh; third-party modules the first child imported are imported into the parent afterwards, so later
children start warm. No stale bytecode: bytecode is neither written nor read from ``__pycache__``
(``sys.pycache_prefix`` points at an empty directory), because a same-size edit written within the
same second as a cached .pyc would otherwise run the old code.

Job (JSON): ``mode`` "validate" or "run"; ``f2p``/``p2p`` test ids; ``candidates``
[{"id", "files": {path: text}}]; ``baseline`` {"f2p": n, "p2p": m} (the counts to beat);
``p2p_mode`` "improved" (default: P2P only when F2P improves), "all" or "never"; ``stop_on_fix``;
``timeout_s`` per child; ``deadline_s`` for the whole job; ``coverage`` (run mode: per-test lines).
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

PYTEST_ARGS = ["-q", "--color=no", "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
# Built-in plugins that cannot change a verdict without their own options; skipping them saves start-up.
PYTEST_ARGS += [arg for name in ("pastebin", "junitxml", "stepwise", "setuponly", "setupplan") for arg in ("-p", f"no:{name}")]
READ_CHUNK = 1 << 16


def _is_test_file(path: str) -> bool:
    base = os.path.basename(path)
    parts = path.replace("\\", "/").split("/")
    return (base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"
            or "tests" in parts[:-1] or "test" in parts[:-1])


def _send(out_fd: int, payload: dict) -> None:
    """Write the child's JSON down the pipe and leave at once (no atexit, no pytest unconfigure)."""
    view = memoryview(json.dumps(payload).encode())
    while view:
        view = view[os.write(out_fd, view[:READ_CHUNK]):]
    os._exit(0)


def _loaded_modules(root: str) -> list[str]:
    return sorted(name for name, mod in list(sys.modules.items()) if not _in_repo(mod, root))


def _make_recorder(pytest, root: str, coverage: bool, skip_dir: str = "", out_fd: int = -1):
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
                mine = skip_dir and absolute.startswith(skip_dir + os.sep)  # this worker's own folder
                rel = None if rel is None or mine or _is_test_file(rel) else rel
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
            return {"exit_code": exit_code, "status": self.status, "failures": self.failures,
                    "coverage": self.coverage, "collect_errors": self.collect_errors,
                    "modules": _loaded_modules(root)}

        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(self, session, exitstatus):
            # every test and fixture teardown is done: answer now and skip pytest's slow unconfigure
            if out_fd >= 0:
                _send(out_fd, self.payload(int(exitstatus)))

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
    recorder = _make_recorder(pytest, root, coverage, os.path.dirname(os.path.realpath(__file__)), out_fd)
    try:
        code = pytest.main([*PYTEST_ARGS, f"--tb={tb}", *test_ids], plugins=[recorder])
        payload = recorder.payload(int(code))  # only when the session never finished (usage error, ...)
    except BaseException as exc:  # the child must always answer
        payload = {"exit_code": -1, "status": {}, "error": f"{type(exc).__name__}: {exc}"}
    _send(out_fd, payload)


def run_forked(pytest, root: str, test_ids: list[str], timeout_s: float, coverage: bool = False,
               tb: str = "no") -> dict:
    """Fork, run the tests in the child, collect its JSON; kill it (and its group) on timeout."""
    if not test_ids:
        return {"exit_code": 0, "status": {}, "seconds": 0.0}
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(pytest, root, test_ids, coverage, tb, write_fd)
    os.close(write_fd)
    chunks, timed_out = [], False
    deadline = start + timeout_s
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            chunk = os.read(read_fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(read_fd)
    if timed_out:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            with contextlib.suppress(OSError):
                target()
    os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    if timed_out:
        return {"exit_code": -9, "status": {}, "timed_out": True, "seconds": seconds}
    try:
        result = json.loads(b"".join(chunks) or b"{}")
    except json.JSONDecodeError:
        result = {"exit_code": -1, "status": {}, "error": "child died without a result"}
    result.setdefault("status", {})
    result["seconds"] = seconds
    return result


def _passed(status: dict, ids: list[str]) -> int:
    return sum(status.get(t) in ("PASSED", "XFAIL") for t in ids)


def warm_up(root: str, modules: list[str]) -> None:
    """Import what the child imported from outside the repository, then drop any repository module."""
    for name in modules:
        if name in sys.modules or name == "__main__":
            continue
        with contextlib.suppress(BaseException):  # one that only imports inside pytest: leave it cold
            importlib.import_module(name)
    for name, mod in list(sys.modules.items()):
        if _in_repo(mod, root):
            del sys.modules[name]


def _in_repo(mod, root: str) -> bool:
    paths = [getattr(mod, "__file__", None) or "", *list(getattr(mod, "__path__", None) or [])]
    return any(str(p).startswith(root + os.sep) for p in paths)


def validate(pytest, root: str, job: dict) -> dict:
    f2p, p2p = list(job.get("f2p", [])), list(job.get("p2p", []))
    base = job.get("baseline", {})
    base_f2p, base_p2p = int(base.get("f2p", 0)), int(base.get("p2p", len(p2p)))
    p2p_mode = job.get("p2p_mode", "improved")
    timeout_s = float(job.get("timeout_s", 30.0))
    deadline = time.perf_counter() + float(job.get("deadline_s", 1e9))
    candidates = job.get("candidates", [])
    originals: dict[str, str] = {}
    results, stopped, warmed = [], "", False
    for cand in candidates:
        if time.perf_counter() > deadline:
            stopped = "deadline"
            break
        files = cand["files"]
        for path in files:
            if path not in originals:
                with open(path, encoding="utf-8") as fh:
                    originals[path] = fh.read()
        try:
            for path, text in files.items():
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
            first = run_forked(pytest, root, f2p, timeout_s)
            if not warmed and first.get("modules"):
                warm_up(root, first["modules"])
                warmed = True
            status = dict(first["status"])
            f2p_passed = _passed(status, f2p)
            entry = {"id": cand["id"], "f2p_passed": f2p_passed, "seconds": first["seconds"],
                     "timed_out": bool(first.get("timed_out")), "p2p_passed": None}
            if first.get("error"):
                entry["error"] = first["error"]
            wanted = p2p_mode == "all" or (p2p_mode == "improved" and f2p_passed > base_f2p)
            if wanted and not entry["timed_out"] and not p2p:
                entry["p2p_passed"] = 0  # nothing to break
            elif wanted and not entry["timed_out"]:
                second = run_forked(pytest, root, p2p, timeout_s)
                status.update(second["status"])
                entry["p2p_passed"] = _passed(second["status"], p2p)
                entry["seconds"] += second["seconds"]
                entry["timed_out"] = bool(second.get("timed_out"))
            entry["status"] = status
            entry["fixed"] = f2p_passed == len(f2p) and (entry["p2p_passed"] or 0) >= len(p2p)
            entry["p2p_ok"] = entry["p2p_passed"] is not None and entry["p2p_passed"] >= base_p2p
        finally:
            for path in files:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(originals[path])
        results.append(entry)
        if entry["fixed"] and job.get("stop_on_fix", True):
            stopped = "fixed"
            break
    return {"mode": "validate", "results": results, "stopped": stopped}


def run_once(pytest, root: str, job: dict) -> dict:
    """The current tree once: statuses, failure tracebacks, and per-test coverage when asked."""
    ids = list(job.get("f2p", [])) + [t for t in job.get("p2p", []) if t not in set(job.get("f2p", []))]
    result = run_forked(pytest, root, ids, float(job.get("timeout_s", 120.0)),
                        coverage=bool(job.get("coverage")), tb=job.get("tb", "long"))
    result.pop("modules", None)
    result["mode"] = "run"
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: worker.py JOB.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        job = json.load(fh)
    root = os.path.realpath(job.get("repo_dir") or os.getcwd())
    os.chdir(root)
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.pycache_prefix = tempfile.mkdtemp(prefix="hrm-spawn-pyc-")  # never read a stale __pycache__
    for entry in reversed(job.get("pythonpath", ["."])):
        sys.path.insert(0, os.path.join(root, entry))
    import pytest  # warm: every child inherits it

    start = time.perf_counter()
    result = run_once(pytest, root, job) if job.get("mode") == "run" else validate(pytest, root, job)
    result["wall_s"] = time.perf_counter() - start
    t = os.times()  # CPU seconds of this process and its reaped children (the per-core cost)
    result["cpu_s"] = t.user + t.system + t.children_user + t.children_system
    tmp = argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
