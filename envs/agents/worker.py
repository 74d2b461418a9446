"""Warm fork validator: one process imports pytest, then forks a child per candidate.

Standalone (stdlib + pytest): the repair agent copies this file into the sandbox and runs it with the
sandbox's interpreter, ``python worker.py job.json result.json``, inside the repository.

The parent never imports the repository's own modules, so every child imports the candidate's code
fresh; third-party modules the first child imported are imported into the parent afterwards, so later
children start warm. No stale bytecode: bytecode is neither written nor read from ``__pycache__``
(``sys.pycache_prefix`` points at an empty directory), because a same-size edit written within the
same second as a cached .pyc would otherwise run the old code.

Validate mode keeps a second warm process too: a child of the parent that runs one pytest session on
the buggy tree, imports and collects the F2P+P2P tests once, and then serves candidates. For each one
it forks a grandchild that swaps the ``__code__`` of the live functions the candidate changed and runs
the collected items, so a candidate costs a fork and its tests, not pytest start-up and collection.
Only edits confined to function bodies take that path, and only when no changed function ran while the
session imported and collected (its results could be stored anywhere); anything else (module or class
code, decorators, a file whose live code does not match its source) runs in a fresh-import child from
the parent as before. Files are still written to disk either way (tracebacks, lazy imports, subprocesses).

Job (JSON): ``mode`` "validate" or "run"; ``f2p``/``p2p`` test ids; ``candidates``
[{"id", "files": {path: text}}]; ``baseline`` {"f2p": n, "p2p": m} (the counts to beat);
``p2p_mode`` "improved" (default: P2P only when F2P improves), "all" or "never"; ``stop_on_fix``;
``timeout_s`` per child; ``deadline_s`` for the whole job; ``coverage`` (run mode: per-test lines);
``fast`` (default true: the warm session above). Each validate result names its ``path``, "fast" or
"fresh" (with ``fresh_reason``).
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import importlib.machinery
import json
import os
import select
import signal
import sys
import tempfile
import threading
import time
import types

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


def _is_test_file(path: str) -> bool:
    # hrm_spawn.envs.agents.localize.is_test_path's rule, repeated: this file runs standalone in the sandbox
    base = os.path.basename(path)
    parts = path.replace("\\", "/").split("/")
    return (
        base.startswith("test_")
        or base.endswith("_test.py")
        or base == "conftest.py"
        or "tests" in parts[:-1]
        or "test" in parts[:-1]
    )


def _send(out_fd: int, payload: dict) -> None:
    """Write the child's JSON down the pipe and leave at once (no atexit, no pytest unconfigure)."""
    view = memoryview(json.dumps(payload).encode())
    while view:
        view = view[os.write(out_fd, view[:READ_CHUNK]) :]
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


def run_forked(
    pytest, root: str, test_ids: list[str], timeout_s: float, coverage: bool = False, tb: str = "no"
) -> dict:
    """Fork, run the tests in the child, collect its JSON; kill it (and its group) on timeout."""
    if not test_ids:
        return {"exit_code": 0, "status": {}, "seconds": 0.0}
    return _fork_and_await(lambda out_fd: _child(pytest, root, test_ids, coverage, tb, out_fd), timeout_s)


def _fork_and_await(child, timeout_s: float, close: tuple = ()) -> dict:
    """Fork; the child closes ``close``, runs ``child(out_fd)`` (which answers with ``_send`` and exits);
    the parent returns its JSON, killing it (and its process group) on timeout."""
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        for fd in close:
            os.close(fd)
        child(write_fd)
        os._exit(1)  # not reached: child answers with _send, which exits
    os.close(write_fd)
    return _await_child(pid, read_fd, start, timeout_s)


def _read_until(fd: int, deadline: float, done) -> tuple[bytes, bool]:
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


def _kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(OSError):
            target()


def _await_child(pid: int, read_fd: int, start: float, timeout_s: float) -> dict:
    """The child's JSON (it closes the pipe by exiting); on timeout kill it with its process group."""
    data, timed_out = _read_until(read_fd, start + timeout_s, lambda chunk: False)
    os.close(read_fd)
    if timed_out:
        _kill(pid)
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


# ---- the fast path: which live functions a candidate changes, and their new code ----------------------

CO_OPTIMIZED, CO_NEWLOCALS = 0x1, 0x2
AMBIGUOUS = object()  # two equal old code objects that the candidate maps to different new code


def _kids(code: types.CodeType) -> list[types.CodeType]:
    return [c for c in code.co_consts if isinstance(c, types.CodeType)]


def _is_function(code: types.CodeType) -> bool:
    return code.co_flags & (CO_OPTIMIZED | CO_NEWLOCALS) == CO_OPTIMIZED | CO_NEWLOCALS


def _const_key(value) -> object:
    """Constants compared by type too (1 == 1.0 == True, 0.0 == -0.0); nested code compared separately."""
    if isinstance(value, types.CodeType):
        return "<code>"
    if isinstance(value, tuple):
        return ("tuple", tuple(_const_key(v) for v in value))
    if isinstance(value, frozenset):
        return ("frozenset", tuple(sorted(repr(_const_key(v)) for v in value)))
    return (type(value).__name__, repr(value))


def _shape(code: types.CodeType) -> tuple:
    """Everything that makes the code run differently, apart from nested code and line numbers."""
    return (
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_flags,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_name,
        getattr(code, "co_qualname", None),
        getattr(code, "co_exceptiontable", None),
        tuple(_const_key(c) for c in code.co_consts),
    )


def _same(old: types.CodeType, new: types.CodeType) -> bool:
    """Same behaviour: equal apart from line numbers, nested code included."""
    olds, news = _kids(old), _kids(new)
    if _shape(old) != _shape(new) or len(olds) != len(news):
        return False
    return all(_same(o, n) for o, n in zip(olds, news))  # noqa: B905 (sandbox Pythons < 3.10)


def _walk(old: types.CodeType, new: types.CodeType, plan: dict, changed: set) -> bool:
    """Pair two code trees; ``plan`` gets old -> new for each function code that differs at all,
    ``changed`` the old function code that behaves differently. False when code that runs at import
    (module or class body) differs apart from its nested code and line numbers."""
    if old == new:
        return True
    olds, news = _kids(old), _kids(new)
    paired = len(olds) == len(news)
    if _is_function(old) and _is_function(new):
        plan[old] = new
        if not _same(old, new):
            changed.add(old)
        if paired:  # closures made at collection time; their outer function only moved if they matter
            for o, n in zip(olds, news):  # noqa: B905 (lengths checked)
                _walk(o, n, plan, changed)
        return True
    if not paired or _shape(old) != _shape(new):
        return False
    return all(_walk(o, n, plan, changed) for o, n in zip(olds, news))  # noqa: B905 (lengths checked)


def _code_index(code: types.CodeType, plan: dict, index: dict) -> dict:
    """Every old code object -> its new code (None when unchanged); AMBIGUOUS where equal ones part."""
    target = plan.get(code)
    if code in index and index[code] is not target:
        index[code] = AMBIGUOUS
    else:
        index.setdefault(code, target)
    for kid in _kids(code):
        _code_index(kid, plan, index)
    return index


def _order_blind(cls: type) -> bool:
    """No metaclass or __init_subclass__ that could have looked at the order of the class's namespace."""
    hooks = [type(cls), *[c for c in cls.__mro__[1:] if "__init_subclass__" in vars(c)]]
    return all((c.__module__, c.__name__) in _ORDER_BLIND for c in hooks)


def _reorder(ns: dict, order: list[str]) -> None:
    """Put ``order``'s names into the slots they hold in ``ns``, in that order (values unchanged)."""
    keys = list(ns)
    wanted = set(order)
    slots = [i for i, key in enumerate(keys) if key in wanted]
    for slot, name in zip(slots, order):  # noqa: B905 (the planner checked that all are there)
        keys[slot] = name
    items = [(key, ns[key]) for key in keys]
    ns.clear()
    ns.update(items)


def _realpath(cache: dict, filename: str) -> str:
    real = cache.get(filename)
    if real is None:
        real = cache[filename] = os.path.realpath(filename)
    return real


# A candidate that only reorders definitions in a module or class body (SWE-smith's shuffled methods) builds
# the same namespace in another order: such moves are taken when each moved statement is a def whose name
# is bound once and read by no other statement there, and whose decorators, defaults and annotations are
# plain names or attributes bound elsewhere (so evaluating them earlier or later cannot differ).
_PLAIN_EXPR = (
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Constant,
    ast.Tuple,
    ast.List,
    ast.BinOp,
    ast.BitOr,
    ast.Load,
    ast.Slice,
    getattr(ast, "Index", ast.Slice),
)
# metaclasses and __init_subclass__ hooks known not to look at the order of a class's namespace
_ORDER_BLIND = {
    ("builtins", "type"),
    ("abc", "ABCMeta"),
    ("builtins", "object"),
    ("typing", "Generic"),
    ("typing", "Protocol"),
    ("typing", "_ProtocolMeta"),
}


DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _bound(body: list) -> list[str]:
    names = []
    for stmt in body:
        for node in [stmt] if isinstance(stmt, DEFS) else ast.walk(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.append(node.id)
            elif isinstance(node, ast.alias):
                names.append((node.asname or node.name).split(".")[0])
    return names


def _header_exprs(stmt) -> list:
    """What a def evaluates where it stands: decorators, defaults, annotations."""
    args = stmt.args
    exprs = [*stmt.decorator_list, *args.defaults, *[d for d in args.kw_defaults if d is not None]]
    every = [*getattr(args, "posonlyargs", []), *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    exprs += [a.annotation for a in every if a is not None and a.annotation is not None]
    return exprs + ([stmt.returns] if stmt.returns is not None else [])


def _loads(stmt) -> set[str]:
    """Names a body statement reads while the body runs (function bodies run later)."""
    roots = _header_exprs(stmt) if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) else [stmt]
    return {
        n.id
        for root in roots
        for n in ast.walk(root)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def _movable(body: list) -> set[int]:
    bound = _bound(body)
    movable = set()
    for i, stmt in enumerate(body):
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) or bound.count(stmt.name) != 1:
            continue
        if any(not isinstance(n, _PLAIN_EXPR) for e in _header_exprs(stmt) for n in ast.walk(e)):
            continue
        if _loads(stmt) & set(bound) or any(
            stmt.name in _loads(other) for other in body if other is not stmt
        ):
            continue
        movable.add(i)
    return movable


def _canon(node, moves: list, where: str = "") -> str:
    """ast.dump with movable defs of every module/class body sorted by name; ``moves`` gets
    (qualname of the body, names in body order) for each body."""
    if isinstance(node, (ast.Module, ast.ClassDef)):
        body = node.body
        movable = set() if getattr(node, "decorator_list", None) else _movable(body)  # a decorator may look
        inner = f"{where}{node.name}." if isinstance(node, ast.ClassDef) else where
        # a placeholder where a movable def stands: the others keep their places, and so the namespace slots
        kept = ["def" if i in movable else _canon(s, moves, inner) for i, s in enumerate(body)]
        moved = sorted((body[i].name, _canon(body[i], moves, inner)) for i in movable)
        moves.append((inner[:-1] if inner else "", [body[i].name for i in sorted(movable)]))
        header = (
            ast.dump(ast.ClassDef(node.name, node.bases, node.keywords, [], node.decorator_list))
            if isinstance(node, ast.ClassDef)
            else "module"
        )
        return f"{header}[{'|'.join(kept)}||{'|'.join(d for _, d in moved)}]"
    return ast.dump(node)


def _reorders(old_text: str, new_text: str) -> list[tuple[str, list[str]]] | None:
    """(body qualname, new order of its moved names) for each reordered body; None if the candidate is
    more than such a reorder."""
    try:
        old_moves: list = []
        new_moves: list = []
        if _canon(ast.parse(old_text), old_moves) != _canon(ast.parse(new_text), new_moves):
            return None
    except (SyntaxError, ValueError, RecursionError):
        return None
    return [(where, new) for (where, old), (_, new) in zip(old_moves, new_moves) if old != new]  # noqa: B905


def _all_code(code: types.CodeType, out: dict) -> dict:
    """(co_qualname, occurrence) -> code, depth first in definition order."""
    qualname = getattr(code, "co_qualname", None)
    seen = out.setdefault(None, {})
    seen[qualname] = seen.get(qualname, -1) + 1
    out[(qualname, seen[qualname])] = code
    for kid in _kids(code):
        _all_code(kid, out)
    return out


def _pair_by_name(old: types.CodeType, new: types.CodeType, plan: dict, changed: set) -> bool:
    olds, news = _all_code(old, {}), _all_code(new, {})
    olds.pop(None), news.pop(None)
    if set(olds) != set(news) or any(k[0] is None for k in olds):
        return False
    for key, code in olds.items():
        if _is_function(code) and code != news[key]:
            plan[code] = news[key]
            if not _same(code, news[key]):
                changed.add(code)
    return True


class LiveCode:
    """What the warm session holds from the candidate files: live functions, code that ran while it
    imported and collected, suspended generators, imported modules and the original sources."""

    def __init__(self, watched: set[str]) -> None:
        self.watched = watched
        self.names: dict[str, str] = {}
        self.ran: set[types.CodeType] = set()
        self.funcs: dict[str, list[types.FunctionType]] = {}
        self.suspended: set[types.CodeType] = set()
        self.imported: set[str] = set()
        self.sources: dict[str, str] = {}
        self._compiled: dict[str, types.CodeType] = {}
        for path in watched:
            with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8") as fh:
                self.sources[path] = fh.read()

    def tracer(self, frame, event, arg) -> None:
        """Global trace function (call events only): remember watched code that ran."""
        code = frame.f_code
        if _realpath(self.names, code.co_filename) in self.watched:
            self.ran.add(code)

    def snapshot(self) -> None:
        """After collection: index the live functions and generators of the watched files."""
        for obj in gc.get_objects():
            kind = type(obj)
            if kind is types.FunctionType:
                real = _realpath(self.names, obj.__code__.co_filename)
                if real in self.watched:
                    self.funcs.setdefault(real, []).append(obj)
            elif kind in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
                code = getattr(obj, "gi_code", None) or getattr(obj, "cr_code", None) or obj.ag_code
                if _realpath(self.names, code.co_filename) in self.watched:
                    self.suspended.add(code)
        for mod in list(sys.modules.values()):
            filename = getattr(mod, "__file__", None)
            if isinstance(filename, str) and _realpath(self.names, filename) in self.watched:
                self.imported.add(_realpath(self.names, filename))

    def swaps(self, files: dict[str, str]) -> list[tuple] | str:
        """The (function, new code) and (namespace, new order) pairs that apply ``files`` to this process,
        or why they cannot."""
        out: list[tuple] = []
        for path, text in files.items():
            real = os.path.realpath(path)
            if real not in self.imported and not self.funcs.get(real):
                continue  # never imported here: whoever needs it imports the candidate from disk
            found = self._file_swaps(real, text)
            if isinstance(found, str):
                return f"{path}: {found}"
            out += found
        return out

    def _file_swaps(self, real: str, text: str) -> list[tuple] | str:
        funcs = self.funcs.get(real, [])
        if not real.endswith(".py") or real not in self.sources:
            return "not a readable python source"
        filename = funcs[0].__code__.co_filename if funcs else real  # as the live code names it
        try:
            if real not in self._compiled:
                self._compiled[real] = compile(self.sources[real], filename, "exec", dont_inherit=True)
            old, new = self._compiled[real], compile(text, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return "does not compile"
        plan: dict[types.CodeType, types.CodeType] = {}
        changed: set[types.CodeType] = set()
        orders: list[tuple[dict, list[str]]] = []
        if not _walk(old, new, plan, changed):
            plan, changed = {}, set()
            moves = _reorders(self.sources[real], text)
            if not moves or not _pair_by_name(old, new, plan, changed):
                return "module or class code changed"
            found = self._namespaces(real, moves)
            if isinstance(found, str):
                return found
            orders = found
        if changed & self.ran:
            return "a changed function ran during import or collection"
        if changed & self.suspended:
            return "a changed generator is suspended"
        index = _code_index(old, plan, {})
        out = []
        for func in funcs:
            target = index.get(func.__code__, AMBIGUOUS)
            if target is AMBIGUOUS:
                return f"live {func.__qualname__} does not match the source unambiguously"
            if target is not None:
                if len(target.co_freevars) != len(func.__closure__ or ()):
                    return f"{func.__qualname__}: free variables changed"
                out.append((func, target))
        return out + [(ns, order) for ns, order in orders]

    def _namespaces(
        self, real: str, moves: list[tuple[str, list[str]]]
    ) -> list[tuple[dict, list[str]]] | str:
        """The live dicts (module globals, class namespaces) whose order the reorder changes."""
        mods = [
            m
            for m in list(sys.modules.values())
            if isinstance(getattr(m, "__file__", None), str) and _realpath(self.names, m.__file__) == real
        ]
        out = []
        for mod in mods:
            for where, order in moves:
                obj = mod
                for part in where.split(".") if where else []:
                    obj = getattr(obj, part, None)
                if where and not (isinstance(obj, type) and obj.__qualname__ == where and _order_blind(obj)):
                    return f"reordered class {where} is not a plain class here"
                ns = vars(obj) if not where else gc.get_referents(vars(obj))[0]
                if not isinstance(ns, dict) or not set(order) <= set(ns):
                    return f"reordered names of {where or 'the module'} are not all live"
                out.append((ns, order))
        return out if mods else "reordered module is not imported here"


class _TraceFrom:
    """A meta path finder that finds nothing: it turns the call tracer on just before the first module of
    the repository (or one whose origin the path finder cannot tell) is imported, so pytest's own
    start-up runs untraced while no watched code can have run yet."""

    def __init__(self, live: LiveCode, root: str) -> None:
        self.live, self.root = live, root

    def find_spec(self, name: str, path=None, target=None) -> None:
        if sys.gettrace() is not None:
            return None
        machinery = importlib.machinery
        if machinery.BuiltinImporter.find_spec(name) or machinery.FrozenImporter.find_spec(name):
            return None
        try:
            origin = getattr(machinery.PathFinder.find_spec(name, path), "origin", None)
        except Exception:
            origin = None
        if not isinstance(origin, str) or os.path.realpath(origin).startswith(self.root + os.sep):
            sys.settrace(self.live.tracer)
            threading.settrace(self.live.tracer)
        return None


# ---- the warm session: a child that collects once and forks a grandchild per candidate ----------------


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
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TraceFrom)]
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
                    _reorder(target, change)
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
        _send(out_fd, {**payload, "status": recorder.status, "failures": recorder.failures})

    return _fork_and_await(child, timeout_s, close)


def _session_child(pytest, root: str, job: dict, req_fd: int, rep_fd: int) -> None:
    """The warm session's process: one pytest session on the buggy tree whose run loop is the server."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        watched = {os.path.realpath(p) for cand in job.get("candidates", []) for p in cand["files"]}
        live = LiveCode(watched)
        recorder = _make_recorder(pytest, root, False, os.path.dirname(os.path.realpath(__file__)))
        driver = _make_driver(pytest, job, live, recorder, req_fd, rep_fd)
        ids = list(dict.fromkeys([*job.get("f2p", []), *job.get("p2p", [])]))
        sys.meta_path.insert(0, _TraceFrom(live, root))  # which watched code runs at import and collection
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
        data, timed_out = _read_until(
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
                _kill(self.pid)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.005)
        self.pid = -1


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


def _phase(
    pytest, root: str, warm: WarmSession | None, index: int, phase: str, ids: list[str], timeout_s: float
) -> tuple[dict, str]:
    """One candidate's tests in the warm session, else in a fresh-import child: (result, why fresh)."""
    if warm is None:
        why = "fast path off"
    elif not warm.alive:
        why = warm.why
    else:
        answer = warm.ask(index, phase)
        if answer is not None and "fresh" not in answer:
            return answer, ""
        why = answer["fresh"] if answer is not None else warm.why
    return run_forked(pytest, root, ids, timeout_s), why


def _start_warm(pytest, root: str, job: dict, timeout_s: float, deadline: float) -> WarmSession | None:
    """The warm session, when there is more than one candidate to amortise its start-up over."""
    if not job.get("fast", True) or len(job.get("candidates", [])) < 2:
        return None
    start_s = max(1.0, min(max(60.0, 4 * timeout_s), deadline - time.perf_counter()))
    try:
        return WarmSession(pytest, root, job, timeout_s, start_s)
    except OSError:  # no fork, no pipe: every candidate takes a fresh import
        return None


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
    warm = _start_warm(pytest, root, job, timeout_s, deadline)  # before any candidate is on disk
    try:
        for index, cand in enumerate(candidates):
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
                first, why = _phase(pytest, root, warm, index, "f2p", f2p, timeout_s)
                if not warmed and first.get("modules"):
                    warm_up(root, first["modules"])
                    warmed = True
                status = dict(first["status"])
                f2p_passed = _passed(status, f2p)
                entry = {
                    "id": cand["id"],
                    "f2p_passed": f2p_passed,
                    "seconds": first["seconds"],
                    "timed_out": bool(first.get("timed_out")),
                    "p2p_passed": None,
                    "path": "fresh" if why else "fast",
                }
                if why:
                    entry["fresh_reason"] = why
                if first.get("error"):
                    entry["error"] = first["error"]
                wanted = p2p_mode == "all" or (p2p_mode == "improved" and f2p_passed > base_f2p)
                if wanted and not entry["timed_out"] and not p2p:
                    entry["p2p_passed"] = 0  # nothing to break
                elif wanted and not entry["timed_out"]:
                    second, _ = _phase(pytest, root, warm if not why else None, index, "p2p", p2p, timeout_s)
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
    finally:
        if warm is not None:
            warm.close()
    return {
        "mode": "validate",
        "results": results,
        "stopped": stopped,
        "fast_path": (warm.why or "on") if warm is not None else "off",
    }


def run_once(pytest, root: str, job: dict) -> dict:
    """The current tree once: statuses, failure tracebacks, and per-test coverage when asked."""
    ids = list(job.get("f2p", [])) + [t for t in job.get("p2p", []) if t not in set(job.get("f2p", []))]
    result = run_forked(
        pytest,
        root,
        ids,
        float(job.get("timeout_s", 120.0)),
        coverage=bool(job.get("coverage")),
        tb=job.get("tb", "long"),
    )
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
    pin_rootdir(root)
    import pytest  # warm: every child inherits it

    with contextlib.suppress(Exception):  # and pytest's own plugins, which each session would import
        from _pytest.config import default_plugins

        for name in default_plugins:
            importlib.import_module(f"_pytest.{name}")

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
