"""Plastic-surgery repair: restore removed code from ingredients found elsewhere in the same repository.

SWE-smith's removal modifiers delete a whole statement (``remove_assign``, ``remove_cond``, ``remove_loop``,
``remove_wrapper``), a method (``class_rm_funcs``) or a base class (``class_rm_base``). Mutation cannot
undo that: the code has to be written anew. The plastic-surgery hypothesis of program repair is that the
missing code often exists, nearly or exactly, elsewhere in the same program: the same attribute assignment
in a sibling method, the same guard in a function of the same name in a sibling class, a base class that
the neighbouring classes use. This agent harvests those ingredients from the repository's own source
files (never from its history or an installed copy) and grafts them into the functions and classes the
failing tests blame:

- statements (families ``assign``, ``guard``, ``loop``, ``wrapper``): every statement of that kind in the
  repository whose free names are in scope at the insertion point, inserted at every statement boundary of
  the most suspicious functions;
- ``method``: a method of another class that the blamed class lacks;
- ``base``: a base class that another class of the same module uses.

Candidates are ranked by how well the ingredient fits: it binds a name the function reads but never binds
(a removed assignment leaves one), the failure message names what it defines (``has no attribute 'x'``),
it comes from a function of the same name or the same class, and it shares identifiers with the function.
Near misses are adapted to the target, and the simplest missing assignments synthesised from the function
itself (surgery_adapt.py); the ingredients are harvested by surgery_pantry.py. The agent validates them with the same warm validator and budgets as the mutation agents (RepairAgent).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hrm_spawn.envs.agents.localize import Site
from hrm_spawn.envs.agents.mutate import Candidate
from hrm_spawn.envs.agents.repair import SAFETY_S_PER_VALIDATION, RepairAgent
from hrm_spawn.envs.agents.surgery_adapt import (
    attrs_to_locals,
    handler_binds,
    rename_self_attr,
    synthesised_assigns,
    unwrap_guards,
)
from hrm_spawn.envs.agents.surgery_pantry import (
    INGREDIENTS,
    Ingredient,
    Pantry,
    class_defines,
    classes_in,
    defs_in,
    harvest,
    identifiers,
    indent_text,
    make_ingredient,
    module_names,
    own_binds,
    parses,
    self_attrs,
)
from hrm_spawn.envs.agents.validator.forking import is_test_file

if TYPE_CHECKING:
    from hrm_spawn.envs.agents.repair import _Best, _Session

MAX_PER_FUNCTION = 200  # statement candidates rendered per blamed function, best first
CLASS_EVERY = 4  # statement candidates per class candidate when no failure names a missing attribute
REPEAT_PENALTY = 0.75  # per earlier gap of the same ingredient: try other ingredients before other places
MAX_CANDIDATES = 150  # per list (statements; classes): more than a run validates; each costs a compile
_KNOWN_GLOBALS = set(dir(builtins)) | {"__name__", "__file__", "__doc__", "__class__", "__spec__"}
_WANTED = [
    re.compile(r"has no attribute '(\w+)'"),
    re.compile(r"name '(\w+)' is not defined"),
    re.compile(r"local variable '(\w+)' referenced before assignment"),
    re.compile(r"cannot access (?:local|free) variable '(\w+)'"),
    re.compile(r"unexpected keyword argument '(\w+)'"),
]
_WORD = re.compile(r"[A-Za-z_]\w+")
_OBJECT_INIT = re.compile(r"object\.__init__\(\) takes exactly one argument")
_TYPING_BASES = {"Protocol", "Generic", "ABC", "object", "NamedTuple", "TypedDict", "typing", "abc"}
_LITERAL_INIT = re.compile(
    r"^\w+\s*(?::[^=]+)?=\s*(?:-?\d+|None|True|False|''|\"\"|\[\]|\{\}|\(\)|set\(\))\s*$"
)


# ---- where to graft -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """A place between two statements: insert before ``line`` (1-based) at ``indent``."""

    line: int
    indent: str
    near: tuple[int, ...]  # the statement lines on either side (for the suspiciousness score)
    guarded: frozenset[str] = frozenset()  # names the tests of the ``if``/``while`` around it read


def _gaps(func: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> list[Gap]:
    """Every statement boundary in the function's own blocks (nested defs and classes excluded)."""
    out: list[Gap] = []

    def blocks(node: ast.AST) -> Iterable[list[ast.stmt]]:
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body
        for handler in getattr(node, "handlers", []) or []:
            yield handler.body
        for case in getattr(node, "cases", []) or []:
            yield case.body

    def visit(node: ast.AST, guards: frozenset[str]) -> None:
        for body in blocks(node):
            inside = guards
            if isinstance(node, (ast.If, ast.While)) and body is node.body:
                inside = guards | {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
            first = body[0]
            start = 1 if node is func and _is_docstring(first) else 0
            for i in range(start, len(body) + 1):
                if i < len(body):
                    stmt = body[i]
                    line = min([stmt.lineno, *[d.lineno for d in getattr(stmt, "decorator_list", [])]])
                    near = (stmt.lineno, body[i - 1].lineno) if i else (stmt.lineno,)
                else:
                    line = (body[-1].end_lineno or body[-1].lineno) + 1
                    near = (body[-1].lineno,)
                text = lines[body[min(i, len(body) - 1)].lineno - 1]
                out.append(Gap(line, text[: len(text) - len(text.lstrip())], near, inside))
            for stmt in body:
                if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(stmt, inside)

    visit(func, frozenset())
    return out


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def wanted_names(failures: Iterable[str]) -> set[str]:
    """Names the failure messages say are missing (``has no attribute 'x'``, ``name 'y' is not defined``)."""
    return {m.group(1) for text in failures for regex in _WANTED for m in regex.finditer(text)}


def wanted_attributes(failures: Iterable[str]) -> set[str]:
    """Attributes the failure messages say an object lacks: what a removed method or base would bring
    (``object.__init__() takes exactly one argument``: a constructor that a removed base had)."""
    texts = list(failures)
    out = {m.group(1) for text in texts for m in _WANTED[0].finditer(text)}
    if any(_OBJECT_INIT.search(text) for text in texts):
        out.add("__init__")
    return out


def error_words(failures: Iterable[str]) -> set[str]:
    """Identifiers on the error lines of pytest failure texts (``E   ...``)."""
    out: set[str] = set()
    for text in failures:
        for line in text.splitlines():
            if line.startswith("E "):
                out.update(_WORD.findall(line))
    return out


@dataclass
class _Target:
    """A blamed function: its scope and what it reads without binding."""

    file: str
    qual: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    scope: set[str]
    dangling: dict[str, int]  # name read but bound nowhere in scope -> first line it is read
    idents: set[str]
    cls: str
    score: float
    local: set[str] = field(default_factory=set)  # bound by the function or the functions around it
    loaded: set[str] = field(default_factory=set)  # read anywhere in it (its closures included)
    unused: set[str] = field(default_factory=set)  # parameters it never reads: what read them was removed
    accumulators: set[str] = field(default_factory=set)  # names it adds to (``n += 1``, ``ids.append(x)``)
    bound_at: dict[str, int] = field(default_factory=dict)  # its own locals (not parameters) -> first binding
    fields: set[str] = field(default_factory=set)  # attributes its class assigns on ``self``


def _target(path: str, tree: ast.Module, qual: str, func: Any, outer: set[str], score: float) -> _Target:
    binds = own_binds(func)
    params = {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)}
    known = outer | module_names(tree) | _KNOWN_GLOBALS
    scope = binds | known
    first_read: dict[str, int] = {}
    first_bind: dict[str, int] = {}
    for sub in ast.walk(func):
        if isinstance(sub, ast.Name):
            seen = first_read if isinstance(sub.ctx, ast.Load) else first_bind
            seen[sub.id] = min(seen.get(sub.id, sub.lineno), sub.lineno)
        if isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Name):  # ``n += 1`` reads n first
            first_read[sub.target.id] = min(first_read.get(sub.target.id, sub.lineno), sub.lineno)
        for name, line in _other_binds(sub):  # nested defs, their parameters, imports, ``except ... as``
            first_bind[name] = min(first_bind.get(name, line), line)
    # read before any binding of it (or never bound): a removed assignment leaves exactly that
    dangling = {
        name: line
        for name, line in first_read.items()
        if name not in params and name not in known and line <= first_bind.get(name, line)
    }
    loaded = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    cls = qual.rsplit(".", 1)[0] if "." in qual else ""
    around = [c for c in classes_in(tree) if c.lineno <= func.lineno <= (c.end_lineno or c.lineno)]
    fields = self_attrs(max(around, key=lambda c: c.lineno)) if around else set()
    return _Target(
        path,
        qual,
        func,
        scope | set(dangling),
        dangling,
        identifiers(func),
        cls,
        score,
        local=binds | outer,
        loaded=loaded,
        unused=params - loaded - {"self", "cls"},
        accumulators=_accumulators(func),
        bound_at={n: first_bind[n] for n in binds - params if n in first_bind},
        fields=fields,
    )


def _accumulators(func: ast.AST) -> set[str]:
    """Names the function adds to: ``n += 1``, ``ids.append(x)`` (and extend/add/update), ``d[k] = v``."""
    out = set()
    for sub in ast.walk(func):
        if isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Name):
            out.add(sub.target.id)
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in ("append", "extend", "add", "update", "insert")
            and isinstance(sub.func.value, ast.Name)
        ):
            out.add(sub.func.value.id)
        elif (
            isinstance(sub, ast.Subscript)
            and isinstance(sub.ctx, ast.Store)
            and isinstance(sub.value, ast.Name)
        ):
            out.add(sub.value.id)
    return out


def _other_binds(node: ast.AST) -> list[tuple[str, int]]:
    """(name, line) of what ``node`` binds other than through a Name: a def or class, a parameter, an
    import, an exception name."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(node.name, node.lineno)]
    if isinstance(node, ast.arg):
        return [(node.arg, node.lineno)]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [((a.asname or a.name).split(".")[0], node.lineno) for a in node.names]
    if isinstance(node, ast.ExceptHandler) and node.name:
        return [(node.name, node.lineno)]
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):  # bound before the
        return [
            (n.id, node.lineno)
            for g in node.generators
            for n in ast.walk(g.target)
            if isinstance(n, ast.Name)
        ]
    return []


def _blamed_functions(
    sources: dict[str, str], sites: Sequence[Site], max_functions: int
) -> list[tuple[_Target, list[str]]]:
    """The ``max_functions`` functions holding the best-ranked sites, best first, with their file's lines."""
    best: dict[tuple[str, str], float] = {}
    found: dict[tuple[str, str], tuple[_Target, list[str]]] = {}
    trees: dict[str, tuple[ast.Module, list[tuple[str, Any, set[str]]]]] = {}
    for site in sites:
        if site.file not in sources:
            continue
        if site.file not in trees:
            try:
                tree = ast.parse(sources[site.file])
            except SyntaxError:
                continue
            trees[site.file] = (tree, _scoped_functions(tree))
        tree, funcs = trees[site.file]
        inner = [(q, f, o) for q, f, o in funcs if f.lineno <= site.line <= (f.end_lineno or f.lineno)]
        if not inner:
            continue
        qual, func, outer = max(inner, key=lambda item: item[1].lineno)  # the innermost
        key = (site.file, qual)
        if key not in best:
            if len(best) >= max_functions:
                continue
            best[key] = site.score
            found[key] = (
                _target(site.file, tree, qual, func, outer, site.score),
                sources[site.file].splitlines(keepends=True),
            )
    return list(found.values())


def _scoped_functions(tree: ast.Module) -> list[tuple[str, Any, set[str]]]:
    """(qualified name, node, names bound by enclosing functions) of every function."""
    out = []

    def visit(node: ast.AST, prefix: str, outer: set[str]) -> None:
        for child in defs_in(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, child, outer))
                visit(child, prefix + child.name + ".", outer | own_binds(child))
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".", outer)

    visit(tree, "", set())
    return out


# ---- candidates ----------------------------------------------------------------------------------------


@dataclass
class _Scored:
    score: float
    order: int
    cand: Candidate


def _affinity(ing: Ingredient, target: _Target, wanted: set[str], words: set[str]) -> float:
    """How well an ingredient fits a function (higher is better); see the module docstring."""
    score = 0.0
    binds = ing.binds | ing.attrs
    same = ing.owner == target.qual and ing.owner_line in (0, target.node.lineno)
    if binds & set(target.dangling):
        score += 4.0
        if _LITERAL_INIT.match(ing.text) and binds & target.accumulators:
            score += 1.0  # a missing accumulator (``n += 1``, ``ids.append``) most often starts empty
    if binds & wanted:
        score += 3.0
    if ing.owner_name == target.node.name and not same:
        score += 2.0  # the same function name elsewhere (a sibling class's method, a sibling closure)
    if target.cls and ing.owner.rsplit(".", 1)[0] == target.cls and not same:
        score += 1.0
    if ing.reads & target.unused:
        score += 1.5  # a parameter nothing reads any more: the removed code read it
    if ing.file == target.file:
        score += 0.5
    score += len(ing.idents & words) / (len(ing.idents) or 1)
    score += 2.0 * len(ing.idents & target.idents) / (len(ing.idents | target.idents) or 1)
    return score


def _renamed(ing: Ingredient, target: _Target) -> list[tuple[Ingredient, str]]:
    """Adaptations: the ingredient with a name it binds renamed to one the function reads but never binds
    (``table = tables[self.name]`` where ``raw_table`` is missing), each with what was renamed."""
    out = []
    for old in sorted(_direct_binds(ing.text) - set(target.dangling)):
        pattern = re.compile(rf"(?<![.\w]){re.escape(old)}\b")
        for new in sorted(set(target.dangling) - ing.binds):
            text = pattern.sub(new, ing.text)
            reads = frozenset(n if n != old else new for n in ing.reads)
            binds = frozenset(n if n != old else new for n in ing.binds)
            adapted = Ingredient(
                ing.family,
                text,
                reads,
                binds,
                ing.attrs,
                ing.idents | {new},
                ing.file,
                ing.owner,
                ing.owner_name,
                ing.owner_line,
            )
            out.append((adapted, f"renamed {old}->{new}"))
    return out


def _adapted(ing: Ingredient, target: _Target) -> list[tuple[Ingredient, str]]:
    """The ingredient fitted to ``target`` (surgery_adapt): guards on names not in scope here unwrapped,
    a handler's ``return v`` turned into binding ``v``, another class's field renamed to one of the target's
    class (same method name only), ``obj.name`` read as the target's local ``name``."""
    texts: list[tuple[str | None, str]] = []
    missing = set(ing.reads - target.scope)
    if missing and ing.family in ("guard", "loop", "wrapper"):
        texts.append((unwrap_guards(ing.text, missing), "unwrapped guard"))
    if ing.family == "wrapper":
        texts.append((handler_binds(ing.text), "return->bind"))
    if ing.idents & target.local:
        texts.append((attrs_to_locals(ing.text, target.local), "attribute->local"))
    if ing.owner_name == target.node.name and ing.owner != target.qual and target.fields:
        for old in sorted(ing.attrs - target.fields):
            for new in sorted(target.fields - ing.attrs):
                texts.append((rename_self_attr(ing.text, old, new), f"field {old}->{new}"))
    out = []
    for text, how in texts:
        if text and text != ing.text:
            made = make_ingredient(ing.family, text, ing.file, ing.owner, ing.owner_name, ing.owner_line)
            if made is not None:
                out.append((made, how))
    return out


def _direct_binds(text: str) -> set[str]:
    """Names a statement binds in its own scope (not in its comprehensions, lambdas or nested defs)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.comprehension, ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                continue
            if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
                out.add(child.id)
            visit(child)

    with contextlib.suppress(SyntaxError):  # an ingredient's text always parses; a caller's may not
        visit(ast.parse(text))
    return out


def _dead(ing: Ingredient, target: _Target) -> bool:
    """Whether an assignment only binds locals that the function never reads: dead code, it changes
    nothing a test sees (``tables = {}`` grafted where no ``tables`` is read)."""
    return (
        bool(ing.binds)
        and not ing.attrs
        and not ing.binds & target.loaded
        and "[" not in ing.text.split("=")[0]
    )


def _calls_itself(ing: Ingredient, target: _Target) -> bool:
    """Whether the ingredient calls the function it would go into (``table = self._read_table()`` grafted
    into ``_read_table`` recurses forever)."""
    return re.search(rf"(?<!\w){re.escape(target.node.name)}\s*\(", ing.text) is not None


def _placeholders(func: ast.AST) -> set[int]:
    """Lines of ``pass`` statements that are a block's only statement: a removal leaves exactly that."""
    out = set()
    for node in ast.walk(func):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and len(body) == 1 and isinstance(body[0], ast.Pass):
                out.add(body[0].lineno)
    return out


def statement_candidates(
    sources: dict[str, str],
    sites: Sequence[Site],
    pantry: Pantry,
    failures: Iterable[str] = (),
    max_functions: int = 4,
) -> list[Candidate]:
    """Ingredients grafted at every gap of the blamed functions, best fit first (see ``_affinity``); only
    the best ``MAX_PER_FUNCTION`` per function are rendered."""
    failures = list(failures)
    wanted, words = wanted_names(failures), error_words(failures)
    site_score = {(s.file, s.line): s.score for s in sites}
    scored: list[_Scored] = []
    for rank, (target, lines) in enumerate(_blamed_functions(sources, sites, max_functions)):
        own = {
            "".join(ln.strip() for ln in lines[n.lineno - 1 : n.end_lineno])
            for n in ast.walk(target.node)
            if isinstance(n, ast.stmt)
        }
        options: list[tuple[Ingredient, float, str]] = []
        for ing in pantry.statements:
            variants = [(ing, ""), *_adapted(ing, target)]
            if target.dangling:
                variants += [
                    (renamed, f"{how}, {more}" if how else more)
                    for variant, how in list(variants)
                    for renamed, more in _renamed(variant, target)
                ]
            for variant, how in variants:
                if not variant.reads <= target.scope or _calls_itself(variant, target):
                    continue
                if variant.family == "assign" and _dead(variant, target):
                    continue
                # each adaptation a step further from what the repository wrote
                fit = _affinity(variant, target, wanted, words) - 0.5 * (how.count(",") + 1 if how else 0)
                if "".join(x.strip() for x in variant.text.splitlines()) in own:
                    fit -= 1.0  # the function has it already: a second copy is rarely what was removed
                options.append((variant, fit, how))
        if "assign" in pantry.families:
            for text, why in synthesised_assigns(target.node, target.dangling):
                made = make_ingredient("assign", text, target.file, "this function", "")
                if made is not None and made.reads <= target.scope:
                    # the function's own code suggests it: ahead of a literal from elsewhere
                    options.append((made, _affinity(made, target, wanted, words) + 1.0, f"synthesised {why}"))
        gaps = _gaps(target.node, lines)
        holes = _placeholders(target.node)
        plan: list[tuple[float, int, Ingredient, Gap, str]] = []
        for ing, fit, how in options:
            first_use = min((target.dangling[n] for n in ing.binds & set(target.dangling)), default=None)
            ready = max((target.bound_at.get(n, 0) for n in ing.reads), default=0)
            for gap in gaps:
                if first_use is not None and gap.line > first_use:
                    continue  # it would bind the name after its first use
                if gap.line <= ready:
                    continue  # it would read a local before the function first binds it
                where = max((site_score.get((target.file, n), 0.0) for n in gap.near), default=0.0)
                hole = 2.0 if holes & set(gap.near) else 0.0
                hole += 1.0 if ing.reads & gap.guarded else 0.0  # ``cond(doc)`` where ``cond is not None``
                plan.append((fit + where + hole - 0.5 * rank, len(plan), ing, gap, how))
        plan.sort(key=lambda p: (-p[0], p[1]))
        repeats: dict[int, int] = {}
        spread = []
        for score, order, ing, gap, how in plan:
            n = repeats[id(ing)] = repeats.get(id(ing), -1) + 1
            spread.append((score - REPEAT_PENALTY * n, order, ing, gap, how))
        spread.sort(key=lambda p: (-p[0], p[1]))
        for score, order, ing, gap, how in spread[:MAX_PER_FUNCTION]:
            scored.append(_Scored(score, order, _graft(target, lines, gap, ing, how, holes)))
    return _ranked(scored)


def _graft(
    target: _Target, lines: list[str], gap: Gap, ing: Ingredient, how: str = "", holes: set[int] = frozenset()
) -> Candidate:
    graft = indent_text(ing.text, gap.indent)
    after = lines[gap.line - 1 :]
    # a lone ``pass`` next to the graft is the removal's placeholder: the graft takes its place
    if gap.line in holes and after and after[0].strip() == "pass":
        after = after[1:]
    before = lines[: gap.line - 1]
    if before and gap.line - 1 in holes and before[-1].strip() == "pass":
        before = before[:-1]
    first = ing.text.splitlines()[0].strip()
    renamed = f" {how}" if how else ""
    return Candidate(
        target.file,
        "".join([*before, graft, *after]),
        f"insert {ing.family} `{first[:60]}` (from {ing.owner}{renamed}) into {target.qual} at line {gap.line}",
        gap.line,
        ing.family,
    )


def class_candidates(
    sources: dict[str, str],
    sites: Sequence[Site],
    pantry: Pantry,
    failures: Iterable[str] = (),
    families: Iterable[str] = ("method", "base"),
) -> list[Candidate]:
    """Methods other classes define, and bases other classes of the module use, added to the blamed
    modules' classes; classes whose methods the failing tests ran, and names the failure names, first."""
    families, failures = set(families), list(failures)
    wanted, words = wanted_attributes(failures), error_words(failures)
    file_score: dict[str, float] = {}
    line_score: dict[tuple[str, int], float] = {}
    for site in sites:
        file_score[site.file] = max(file_score.get(site.file, 0.0), site.score)
        line_score[(site.file, site.line)] = site.score
    scored: list[_Scored] = []
    for path in sorted(file_score, key=lambda p: -file_score[p]):
        if path not in sources:
            continue
        try:
            tree = ast.parse(sources[path])
        except SyntaxError:
            continue
        lines = sources[path].splitlines(keepends=True)
        for cls in classes_in(tree):
            end = cls.end_lineno or cls.lineno
            ran = max(
                (s for (f, ln), s in line_score.items() if f == path and cls.lineno <= ln <= end), default=0.0
            )
            named = 1.0 if cls.name in words else 0.0
            if "base" in families:
                for base, bonus in _base_options(cls, path, sources[path], pantry, wanted, tree):
                    score = ran + named + bonus
                    scored.append(_Scored(score, len(scored), _add_base(path, sources[path], cls, base)))
            if "method" in families:
                have = class_defines(cls)
                for name, defs in pantry.methods.items():
                    if name in have or name.startswith("__") and name not in wanted:
                        continue
                    mentioned = 3.0 if name in wanted else 1.0 if name in words else 0.0
                    for ing in defs:
                        if ing.owner_name == cls.name:
                            continue
                        sibling = 1.0 if ing.file == path else 0.0
                        if not mentioned and not (sibling and ran):
                            continue
                        cand = _add_method(path, lines, cls, ing)
                        if cand is not None:
                            scored.append(_Scored(ran + named + mentioned + sibling, len(scored), cand))
    return _ranked(scored)


def _base_options(
    cls: ast.ClassDef, path: str, source: str, pantry: Pantry, wanted: set[str], tree: ast.Module
) -> list[tuple[str, float]]:
    """Bases ``cls`` lacks: those other classes of the module use (first), then classes the module defines
    above it and bases used elsewhere in the repository whose name the module has; a bonus when the base
    defines a name the failure says is missing."""
    have = {ast.get_source_segment(source, b) for b in cls.bases}
    scope = module_names(tree)
    above = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.lineno < cls.lineno]
    elsewhere = [b for f, bases in sorted(pantry.bases.items()) if f != path for b in bases]
    local = pantry.bases.get(path, [])
    out: dict[str, float] = {}
    for base in [*local, *above, *elsewhere]:
        root = base.split(".")[0].split("[")[0]
        if base in have or base in out or base.split(".")[-1] == cls.name or root not in scope:
            continue
        defines = pantry.defines.get(base.split(".")[-1].split("[")[0], set())
        prior = 1.0 if base in above else 0.5 if base in local else 0.0  # a sibling class of the module first
        if root in _TYPING_BASES:
            prior -= 0.5  # a protocol or generic marker rarely changes what a test sees
        if "__init__" in wanted and "__init__" in defines:
            prior += 2.0  # ``object.__init__() takes exactly one argument``: a base's constructor is missing
        out[base] = prior + (3.5 if defines & wanted else 0.0)  # a base brings every missing name at once
    return list(out.items())


def _add_base(path: str, source: str, cls: ast.ClassDef, base: str) -> Candidate:
    lines = source.splitlines(keepends=True)
    head = lines[cls.lineno - 1]
    if cls.bases or cls.keywords:
        first = min([*cls.bases, *[k.value for k in cls.keywords]], key=lambda n: (n.lineno, n.col_offset))
        row = lines[first.lineno - 1]
        lines[first.lineno - 1] = row[: first.col_offset] + f"{base}, " + row[first.col_offset :]
    else:
        lines[cls.lineno - 1] = re.sub(
            rf"(class\s+{re.escape(cls.name)})\s*(\(\s*\))?\s*:", rf"\1({base}):", head, count=1
        )
    return Candidate(path, "".join(lines), f"add base {base} to class {cls.name}", cls.lineno, "base")


def _add_method(path: str, lines: list[str], cls: ast.ClassDef, ing: Ingredient) -> Candidate | None:
    last = cls.body[-1]
    row = lines[last.lineno - 1]
    indent = row[: len(row) - len(row.lstrip())]
    at = last.end_lineno or last.lineno
    new = [*lines[:at], "\n", indent_text(ing.text, indent), *lines[at:]]
    return Candidate(path, "".join(new), f"add method {ing.owner} to class {cls.name}", cls.lineno, "method")


def _ranked(scored: list[_Scored], limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """Best first, identical texts once, texts that do not compile dropped; at most ``limit``."""
    seen: set[tuple[str, str]] = set()
    out: list[Candidate] = []
    for item in sorted(scored, key=lambda s: (-s.score, s.order)):
        if len(out) >= limit:
            break
        key = (item.cand.file, item.cand.text)
        if key in seen or not parses(item.cand.text):
            continue
        seen.add(key)
        out.append(item.cand)
    return out


def interleave(first: Sequence[Candidate], second: Sequence[Candidate], every: int = 1) -> list[Candidate]:
    """``every`` of ``first`` then one of ``second``, in turn: neither ranked list starves the other."""
    out: list[Candidate] = []
    i = j = 0
    while i < len(first) or j < len(second):
        take = min(every, len(first) - i) if j < len(second) else len(first) - i
        out += first[i : i + take]
        i += take
        if j < len(second):
            out.append(second[j])
            j += 1
    return out


def surgery_candidates(
    read: Callable[[str], str],
    files: Sequence[str],
    sites: Sequence[Site],
    failures: Iterable[str],
    families: Iterable[str] = INGREDIENTS,
    max_functions: int = 4,
) -> list[Candidate]:
    """Every graft for ``sites``, ingredients from ``files`` (the repository's non-test Python files)."""
    families = set(families)
    sources = {}
    for path in dict.fromkeys([*files, *(s.file for s in sites)]):
        if is_test_file(path):
            continue
        try:
            sources[path] = read(path)
        except (OSError, ValueError, RuntimeError):
            continue
    failures = list(failures)
    pantry = harvest(sources, families)
    stmts = statement_candidates(sources, sites, pantry, failures, max_functions) if pantry.statements else []
    classes = class_candidates(sources, sites, pantry, failures, families & {"method", "base"})
    # a missing attribute points at the class (a method or base removed); otherwise mostly statements
    return interleave(stmts, classes, 1 if wanted_attributes(failures) else CLASS_EVERY)


class SurgeryAgent(RepairAgent):
    """Restores removed code from the repository's own ingredients; validation as in RepairAgent."""

    # 2: an augmented assignment counts as a read; literal initialisers of a missing name first; names
    #    bound by nested defs, parameters, imports and comprehensions are not missing; a missing
    #    constructor (`object.__init__() takes ...`) points at bases, sibling classes of the module first
    # 3: closures under ``if``/``for`` are functions to blame and to harvest; a scope is the function's own
    #    bindings (not its closures' locals); ingredients adapted to the target (surgery_adapt: guards on
    #    names not in scope unwrapped, a handler's return turned into a binding, a sibling method's field
    #    renamed, ``obj.name`` read as the local ``name``) and assignments synthesised from the function
    #    (``x = self._x``, ``x = cache.get(key)``)
    version = "3"

    def __init__(
        self,
        ingredients: Sequence[str] = INGREDIENTS,
        max_functions: int = 4,
        batch_size: int = 32,
        depth: int = 2,
        candidate_timeout_s: float = 20.0,
        test_timeout_s: float = 300.0,
        name: str = "surgery",
        safety_s_per_validation: float = SAFETY_S_PER_VALIDATION,
    ):
        unknown = set(ingredients) - set(INGREDIENTS)
        if unknown or not ingredients:
            raise ValueError(
                f"SurgeryAgent ingredients {sorted(unknown) or '[]'} invalid; known: {', '.join(INGREDIENTS)}"
            )
        if max_functions < 1:
            raise ValueError(f"SurgeryAgent max_functions must be >= 1, got {max_functions}")
        # RepairAgent's families are unused here (its _candidates is replaced); any valid one will do.
        super().__init__(
            ["operators"],
            1,
            batch_size,
            depth,
            0,
            candidate_timeout_s,
            test_timeout_s,
            name,
            safety_s_per_validation,
        )
        self.ingredients, self.max_functions = list(ingredients), max_functions

    def _candidates(
        self,
        session: _Session,
        sites: list[Site],
        best: _Best,
        rng: Any,
        observed: dict[str, Any] | None = None,
    ) -> list[Candidate]:
        listing = session.run(
            f"cd {shlex.quote(session.sandbox.repo_dir)} && git ls-files -- '*.py'", 60
        ).output
        files = [line.strip() for line in listing.splitlines() if line.strip().endswith(".py")]
        return surgery_candidates(
            session.read,
            files,
            sites,
            (observed or {}).get("failures", {}).values(),
            self.ingredients,
            self.max_functions,
        )
