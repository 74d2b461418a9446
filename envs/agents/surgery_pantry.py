"""The ingredients of plastic surgery: every statement, method and base of a repository, ready to graft.

``harvest`` reads the repository's source files (text, never its history) into a ``Pantry``: each
statement of a function (assignments, ``if`` guards, loops, ``with``/``try`` wrappers) as dedented text
with the names it reads and binds, each method by name, the bases each module's classes use. Also here:
what a piece of code reads and binds, and cutting a statement's text out of its file (surgery.py grafts).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field

from hrm_spawn.envs.agents.surgery_adapt import first_match_loops

STATEMENT_FAMILIES = {
    "assign": (ast.Assign, ast.AugAssign, ast.AnnAssign),
    "guard": (ast.If,),
    "loop": (ast.For, ast.While, ast.AsyncFor),
    "wrapper": (ast.With, ast.AsyncWith, ast.Try),
}
INGREDIENTS = (*STATEMENT_FAMILIES, "method", "base")
MAX_STATEMENT_LINES = 20  # a longer removed block is rarely found whole elsewhere


# ---- what a piece of code reads and binds --------------------------------------------------------------


def reads_binds(node: ast.AST) -> tuple[set[str], set[str]]:
    """(names loaded, names bound) anywhere inside ``node``."""
    reads, binds = set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (reads if isinstance(sub.ctx, ast.Load) else binds).add(sub.id)
        elif isinstance(sub, ast.arg):
            binds.add(sub.arg)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            binds.add(sub.name)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            binds.update((a.asname or a.name).split(".")[0] for a in sub.names)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub is not node:
            binds.add(sub.name)
    return reads, binds


def own_binds(func: ast.AST) -> set[str]:
    """Names bound in ``func``'s own scope: its parameters, its assignments, imports and ``except`` names,
    the names of the defs and classes it holds; not the locals of those defs, lambdas or comprehensions
    (a sibling closure's ``_cond`` is not in scope here)."""
    out = {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)} if hasattr(func, "args") else set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(child.name)
                continue
            if isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                continue
            if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
                out.add(child.id)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                out.update((a.asname or a.name).split(".")[0] for a in child.names)
            elif isinstance(child, ast.ExceptHandler) and child.name:
                out.add(child.name)
            elif isinstance(child, ast.arguments):
                continue
            visit(child)

    visit(func)
    return out


def identifiers(node: ast.AST) -> set[str]:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
    return out


def self_attrs(node: ast.AST) -> set[str]:
    """Attributes assigned on ``self``/``cls`` inside ``node``."""
    return {
        sub.attr
        for sub in ast.walk(node)
        if isinstance(sub, ast.Attribute)
        and isinstance(sub.ctx, ast.Store)
        and isinstance(sub.value, ast.Name)
        and sub.value.id in ("self", "cls")
    }


def module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level: imports, defs, classes, assignments, ``global`` declarations."""
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        else:
            out |= reads_binds(node)[1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            out.update(node.names)
    return out


# ---- source text: cut a statement out, put it back elsewhere ---------------------------------------------


def _block_text(lines: list[str], node: ast.stmt) -> str | None:
    """The statement's whole lines, dedented; None when it shares a line with other code or is too long."""
    first, last = node.lineno, node.end_lineno or node.lineno
    if getattr(node, "decorator_list", None):
        first = min(d.lineno for d in node.decorator_list)
    if last - first + 1 > MAX_STATEMENT_LINES * (3 if isinstance(node, ast.FunctionDef) else 1):
        return None
    head = lines[first - 1]
    indent = len(head) - len(head.lstrip())
    if head[:indent].strip() or indent != node.col_offset and not getattr(node, "decorator_list", None):
        return None
    tail = lines[last - 1].rstrip("\n")
    if node.end_col_offset is not None and tail[node.end_col_offset :].split("#", 1)[0].strip():
        return None  # something follows on the last line (``x = 1; y = 2``)
    out = []
    for line in lines[first - 1 : last]:
        if line.strip() and line[:indent].strip():
            return None  # dedents below its own first line: a continuation we cannot move safely
        out.append(line[indent:] if line.strip() else "\n")
    text = "".join(out)
    return text if text.endswith("\n") else text + "\n"


def indent_text(text: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(keepends=True))


def parses(text: str) -> bool:
    try:
        compile(text, "<candidate>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


# ---- ingredients --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingredient:
    """A statement or method found in the repository, ready to graft (dedented text)."""

    family: str
    text: str
    reads: frozenset[str]  # free names it loads
    binds: frozenset[str]  # names it binds
    attrs: frozenset[str]  # attributes it assigns on self
    idents: frozenset[str]
    file: str
    owner: str  # the function (``Class.method``) or class it comes from
    owner_name: str  # the bare function or class name
    owner_line: int = 0  # where the owner starts (two closures ``updater`` of one method are two owners)


@dataclass
class Pantry:
    """Every ingredient of a repository, and the classes with their bases and methods."""

    statements: list[Ingredient] = field(default_factory=list)
    methods: dict[str, list[Ingredient]] = field(default_factory=dict)  # method name -> its definitions
    bases: dict[str, list[str]] = field(default_factory=dict)  # file -> base expressions used there
    defines: dict[str, set[str]] = field(default_factory=dict)  # class name -> names its body defines
    families: set[str] = field(default_factory=lambda: set(INGREDIENTS))  # what was harvested


def _family(node: ast.stmt, families: set[str]) -> str | None:
    for family, types in STATEMENT_FAMILIES.items():
        if family in families and isinstance(node, types):
            if isinstance(node, ast.AnnAssign) and node.value is None:
                return None  # a bare annotation binds nothing
            return family
    return None


def defs_in(node: ast.AST) -> Iterable[ast.AST]:
    """The defs and classes directly inside ``node``, also those under its ``if``/``for``/``try`` blocks (a
    closure defined in one branch), but not those inside another def or class."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield child
        elif isinstance(child, ast.stmt):
            yield from defs_in(child)


def _functions(
    tree: ast.AST, prefix: str = ""
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in defs_in(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def classes_in(tree: ast.AST) -> list[ast.ClassDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]


def harvest(sources: dict[str, str], families: Iterable[str] = INGREDIENTS) -> Pantry:
    """The ingredients of ``sources`` (path -> text) in the given families; unparsable files are skipped."""
    families = set(families)
    pantry = Pantry(families=families)
    seen: set[str] = set()
    for path in sorted(sources):
        try:
            tree = ast.parse(sources[path])
        except SyntaxError:
            continue
        lines = sources[path].splitlines(keepends=True)
        for qual, func in _functions(tree):
            for node in _own_statements(func):
                family = _family(node, families)
                if family is None:
                    continue
                text = _block_text(lines, node)
                if text is None or (family, text) in seen:
                    continue
                seen.add((family, text))
                reads, binds = reads_binds(node)
                pantry.statements.append(
                    Ingredient(
                        family,
                        text,
                        frozenset(free_reads(node, reads, binds)),
                        frozenset(binds),
                        frozenset(self_attrs(node)),
                        frozenset(identifiers(node)),
                        path,
                        qual,
                        func.name,
                        func.lineno,
                    )
                )
            if "loop" in families:
                for text in first_match_loops(func):
                    made = make_ingredient("loop", text, path, qual, func.name, func.lineno)
                    if made is not None and ("loop", text) not in seen:
                        seen.add(("loop", text))
                        pantry.statements.append(made)
        for cls in classes_in(tree):
            pantry.defines[cls.name] = class_defines(cls)
            if "base" in families:
                for base in cls.bases:
                    text = ast.get_source_segment(sources[path], base)
                    if text and text not in pantry.bases.setdefault(path, []):
                        pantry.bases[path].append(text)
            if "method" in families:
                for node in cls.body:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        text = _block_text(lines, node)
                        if text is not None:
                            pantry.methods.setdefault(node.name, []).append(
                                Ingredient(
                                    "method",
                                    text,
                                    frozenset(),
                                    frozenset({node.name}),
                                    frozenset(self_attrs(node)),
                                    frozenset(identifiers(node)),
                                    path,
                                    f"{cls.name}.{node.name}",
                                    cls.name,
                                )
                            )
    return pantry


def _own_statements(func: ast.AST) -> Iterable[ast.stmt]:
    """Statements of ``func`` at any depth, except those of nested functions and classes (harvested with
    those)."""
    for child in ast.iter_child_nodes(func):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(child, ast.stmt):
            yield child
        yield from _own_statements(child)


def class_defines(cls: ast.ClassDef) -> set[str]:
    out = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        else:
            out |= reads_binds(node)[1]
        out |= self_attrs(node)
    return out


def free_reads(node: ast.AST, reads: set[str], binds: set[str]) -> set[str]:
    """The names a statement needs from its surroundings: what it reads and does not bind, and what its
    header reads before anything of it runs (``x = x + 1``, ``if t is None: t = {}`` need ``x``, ``t``)."""
    header: list[ast.AST] = []
    if isinstance(node, (ast.If, ast.While)):
        header = [node.test]
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        header = [node.iter]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        header = [item.context_expr for item in node.items]
    elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        header = [node.value]
    elif isinstance(node, ast.AugAssign):
        header = [node.value, node.target]
    loaded = {
        n.id
        for h in header
        for n in ast.walk(h)
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)
    }
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        loaded.add(node.target.id)
    return (reads - binds) | (loaded - _scoped_binds(header))


def _scoped_binds(nodes: list[ast.AST]) -> set[str]:
    """Names bound inside comprehensions and lambdas of ``nodes`` (their own scope: not needed outside)."""
    out: set[str] = set()
    for h in nodes:
        for n in ast.walk(h):
            if isinstance(n, ast.comprehension):
                out |= {t.id for t in ast.walk(n.target) if isinstance(t, ast.Name)}
            elif isinstance(n, ast.Lambda):
                out |= {a.arg for a in ast.walk(n.args) if isinstance(a, ast.arg)}
    return out


def make_ingredient(
    family: str, text: str, file: str, owner: str, owner_name: str, owner_line: int = 0
) -> Ingredient | None:
    """An ingredient made or adapted here (not harvested as is); None when the text does not parse."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    reads, binds = reads_binds(tree)
    return Ingredient(
        family,
        text,
        frozenset(free_reads(tree.body[0], reads, binds) if tree.body else reads - binds),
        frozenset(binds),
        frozenset(self_attrs(tree)),
        frozenset(identifiers(tree)),
        file,
        owner,
        owner_name,
        owner_line,
    )
