"""Adapting a harvested statement to the place it is grafted, and synthesising the simplest missing ones.

Plastic surgery rarely finds the removed code verbatim: the same logic elsewhere sits under a guard the
target lacks, returns where the target must bind, or names another class's field. These text-to-text
transforms (each on one dedented statement; ``None`` when it does not apply) turn a near miss into a
graft, the way program-repair tools adapt their donor code to the recipient's context:

- ``unwrap_guards``: an ``if`` (without ``else``) whose test reads a name not in scope here is replaced
  by its body (``for d in t: if _cond(t[d]): ...`` from a filtering sibling, grafted where all is kept);
- ``handler_binds``: ``try: x = ... except E: return v`` becomes ``... except E: x = v`` (the donor
  returned a default, the target goes on with it);
- ``rename_self_attr``: ``self.memory = data`` from a sibling class's method of the same name, written to
  a field of the target's class;
- ``attrs_to_locals``: ``document.doc_id`` read as the local ``doc_id`` that the target already has;
- ``first_match_loops``: ``[f(x) for x in xs if p(x)]`` read as the loop that returns the first match,
  ``for x in xs: if p(x): return f(x)`` (a lookup of one where the donor collects all);
- ``synthesised_assigns``: a name the function reads but never binds, bound to what the function itself
  suggests: the field of the same name (``next_id = self._next_id``) or a lookup in the mapping the
  function later stores into (``cached = self._cache.get(key)`` before ``self._cache[key] = ...``).

Rendered with ``ast.unparse``: an adapted statement loses its comments, never its meaning.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

_STEM = re.compile(r"[a-z]+")


class _Unwrap(ast.NodeTransformer):
    """Replace each ``if`` without ``else`` whose test reads a name in ``missing`` by its body."""

    def __init__(self, missing: set[str]):
        self.missing, self.changed = missing, False

    def _visit_block(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            stmt = self.visit(stmt)
            if isinstance(stmt, ast.If) and not stmt.orelse and _loads(stmt.test) & self.missing:
                self.changed = True
                out += stmt.body
            else:
                out.append(stmt)
        return out

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, name, self._visit_block(block))
        for handler in getattr(node, "handlers", []) or []:
            handler.body = self._visit_block(handler.body)
        return node


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _parse_one(text: str) -> ast.stmt | None:
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return None
    return body[0] if len(body) == 1 else None


def _render(node: ast.stmt) -> str:
    return ast.unparse(ast.fix_missing_locations(node)) + "\n"


def unwrap_guards(text: str, missing: set[str]) -> str | None:
    """The statement with every ``if`` whose test reads a name of ``missing`` replaced by its body; None
    when there is none, or when the statement itself is such an ``if`` (nothing of it would be left)."""
    stmt = _parse_one(text)
    if stmt is None or not missing:
        return None
    if isinstance(stmt, ast.If) and _loads(stmt.test) & missing:
        return None
    unwrap = _Unwrap(missing)
    stmt = unwrap.visit(stmt)
    return _render(stmt) if unwrap.changed else None


def handler_binds(text: str) -> str | None:
    """``try: x = e except E: return v`` -> ``try: x = e except E: x = v`` (the one name the try body binds
    directly); None when the statement is not such a ``try``."""
    stmt = _parse_one(text)
    if not isinstance(stmt, ast.Try):
        return None
    bound = {
        t.id
        for s in stmt.body
        if isinstance(s, (ast.Assign, ast.AnnAssign))
        for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
        if isinstance(t, ast.Name)
    }
    if len(bound) != 1:
        return None
    name = bound.pop()
    changed = False
    for handler in stmt.handlers:
        for k, sub in enumerate(handler.body):
            if isinstance(sub, ast.Return) and sub.value is not None:
                handler.body[k] = ast.Assign([ast.Name(name, ast.Store())], sub.value, lineno=sub.lineno)
                changed = True
    return _render(stmt) if changed else None


def rename_self_attr(text: str, old: str, new: str) -> str:
    """``self.old`` -> ``self.new`` wherever the statement uses it."""
    return re.sub(rf"\b(self|cls)\.{re.escape(old)}\b", rf"\1.{new}", text)


def attrs_to_locals(text: str, local: set[str]) -> str | None:
    """``obj.name`` -> ``name`` where ``name`` is a local of the target and ``obj`` not ``self``/``cls``;
    None when nothing changes."""
    stmt = _parse_one(text)
    if stmt is None:
        return None

    class _Swap(ast.NodeTransformer):
        changed = False

        def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
            if (
                isinstance(node.ctx, ast.Load)
                and isinstance(node.value, ast.Name)
                and node.value.id not in ("self", "cls")
                and node.attr in local
            ):
                _Swap.changed = True
                return ast.copy_location(ast.Name(node.attr, ast.Load()), node)
            return self.generic_visit(node)

    stmt = _Swap().visit(stmt)
    return _render(stmt) if _Swap.changed else None


def _stems(name: str) -> set[str]:
    """Word stems of an identifier (``cached_results`` -> {cach, resul}): enough to pair names loosely."""
    return {w[:4] for w in _STEM.findall(name.lower()) if len(w) >= 3}


def synthesised_assigns(func: ast.AST, dangling: Iterable[str]) -> list[tuple[str, str]]:
    """(statement text, why) binding each name the function reads but never binds, from the function's own
    code: the ``self`` field of the same name, and ``m.get(k)`` for each ``m[k] = ...`` it stores into when the
    two names share a word (a lookup before the store: the cache idiom)."""
    fields = {
        n.attr
        for n in ast.walk(func)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")
    }
    stores = []
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    stores.append(target)
    out: list[tuple[str, str]] = []
    for name in sorted(dangling):
        for field in sorted(fields):
            if field.strip("_") == name.strip("_"):
                out.append((f"{name} = self.{field}\n", "field"))
        lookups = set()
        for target in stores:
            mapping, key = ast.unparse(target.value), ast.unparse(target.slice)
            if _stems(name) & _stems(mapping):  # ``cached_results`` and ``self._query_cache``
                lookups.add(f"{name} = {mapping}.get({key})\n")
        out += [(text, "lookup") for text in sorted(lookups)]
    return out


def first_match_loops(func: ast.AST) -> list[str]:
    """``for x in xs: if p(x): return f(x)`` for each filtered one-generator comprehension in ``func``."""
    out = []
    for node in ast.walk(func):
        if not isinstance(node, (ast.ListComp, ast.GeneratorExp)) or len(node.generators) != 1:
            continue
        gen = node.generators[0]
        if not gen.ifs or gen.is_async:
            continue
        test = gen.ifs[0] if len(gen.ifs) == 1 else ast.BoolOp(ast.And(), list(gen.ifs))
        found = ast.If(test, [ast.Return(node.elt)], [])
        loop = ast.For(gen.target, gen.iter, [found], [], lineno=node.lineno)
        out.append(_render(loop))
    return out
