"""Change analysis for the fast path: which live functions a candidate changes, and their new code.

Old and new source are compiled and their code-object trees walked in parallel; the live functions of the
warm session are matched to old code by equality. A candidate that only reorders defs in a module or class
body maps to new code for the moved functions plus a new order for the live namespace. ``LiveCode.swaps``
says what to swap, or why the candidate needs a fresh import instead.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib.machinery
import os
import sys
import threading
import types

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


def reorder(ns: dict, order: list[str]) -> None:
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


class TraceFrom:
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
