"""Syntax-aware candidate edits (libcst) at given source lines, by operator family.

Each family is the inverse of bugs that SWE-smith's procedural modifiers inject:

- ``operators``: op_change / flip_operators (``+``/``-``, ``*``/``/``/``//``/``%``, bit ops, shifts,
  comparisons, ``and``/``or``, ``is``/``is not``, ``in``/``not in``, augmented assignment)
- ``operands``: op_swap (left and right of binary, boolean and single comparisons)
- ``constants``: op_change_const (integer +-1, so also 0 <-> 1), True <-> False, off-by-one on slices/range
- ``control``: ctrl_invert_if (swap if/else bodies), negated conditions, a removed ``not``
- ``statements``: ctrl_shuffle (adjacent swaps; for short function bodies, the orders that respect
  def-before-use, a leading docstring and a trailing return)

Removal bugs (remove_assign/cond/loop/wrapper, class_rm_*) cannot be restored by mutation, by design.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

FAMILIES = ("operators", "operands", "constants", "control", "statements")

_ARITH_GROUPS: list[list[type]] = [
    [cst.Add, cst.Subtract],
    [cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.Power],
    [cst.BitAnd, cst.BitOr, cst.BitXor],
    [cst.LeftShift, cst.RightShift],
]
_CMP_GROUPS: list[list[type]] = [
    [cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual],
    [cst.Equal, cst.NotEqual],
    [cst.Is, cst.IsNot],
    [cst.In, cst.NotIn],
]
_AUG_GROUPS: list[list[type]] = [
    [cst.AddAssign, cst.SubtractAssign],
    [cst.MultiplyAssign, cst.DivideAssign, cst.FloorDivideAssign, cst.ModuloAssign, cst.PowerAssign],
    [cst.BitAndAssign, cst.BitOrAssign, cst.BitXorAssign],
    [cst.LeftShiftAssign, cst.RightShiftAssign],
]
_MAX_PERMUTED = 7  # function bodies up to this many statements get dependency-respecting reorders
_MAX_ORDERS = 40


@dataclass(frozen=True)
class Candidate:
    """One edited file: its path, the whole new text, what was changed, where, and by which family."""

    file: str
    text: str
    description: str
    line: int
    family: str


@dataclass
class _Edit:
    old: cst.CSTNode
    new: cst.CSTNode
    description: str
    line: int
    family: str
    # (start, end, text): the same edit as a splice of the source text, when it can be one. Rendering
    # the whole module after deep_replace costs ~0.1 s on a 700-line file; a splice costs microseconds.
    splice: tuple[int, int, str] | None = None


def _alternatives(op: cst.CSTNode, groups: list[list[type]]) -> list[type]:
    for group in groups:
        if type(op) in group:
            return [t for t in group if t is not type(op)]
    return []


def _same_ws(new_type: type, op: cst.CSTNode) -> cst.CSTNode:
    """A new operator node with the old one's surrounding whitespace."""
    kwargs = {}
    for attr in ("whitespace_before", "whitespace_after"):
        if hasattr(op, attr) and attr in new_type.__dataclass_fields__:
            kwargs[attr] = getattr(op, attr)
    return new_type(**kwargs)


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _paren(expr: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(expr, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Comparison)) or expr.lpar:
        return expr
    return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _negate(test: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return test.expression
    return cst.UnaryOperation(operator=cst.Not(), expression=_paren(test))


def _int_value(node: cst.CSTNode) -> int | None:
    """Value of ``5``, ``0x10`` or ``-3``; None for anything else."""
    if isinstance(node, cst.Integer):
        try:
            return int(node.value, 0)
        except ValueError:
            return None
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = _int_value(node.expression)
        return -inner if inner is not None else None
    return None


def _int_node(value: int, like: cst.CSTNode) -> cst.BaseExpression:
    node: cst.BaseExpression = cst.Integer(str(abs(value)))
    if value < 0:
        node = cst.UnaryOperation(operator=cst.Minus(), expression=node)
    return node.with_changes(lpar=like.lpar, rpar=like.rpar) if hasattr(like, "lpar") else node


def _shift(expr: cst.BaseExpression, delta: int) -> cst.BaseExpression:
    op = cst.Add() if delta > 0 else cst.Subtract()
    return cst.BinaryOperation(left=_paren(expr), operator=op, right=cst.Integer(str(abs(delta))))


class _Collector(cst.CSTVisitor):
    """Walks the module once and records every edit of the wanted families at the target lines."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(
        self, lines: set[int], families: set[str], module: cst.Module | None = None, source: str = ""
    ):
        super().__init__()
        self.lines = lines
        self.families = families
        self.edits: list[_Edit] = []
        self._permuted: set[int] = set()
        self._module, self._source = module, source
        self._starts = [0]  # character offset where each line starts
        for text in source.splitlines(keepends=True):
            self._starts.append(self._starts[-1] + len(text))

    def _offset(self, line: int, column: int) -> int:
        return self._starts[line - 1] + column

    def _splice(self, old: cst.CSTNode, new: cst.CSTNode) -> tuple[int, int, str] | None:
        """An expression-level edit as a text splice (statements and blocks carry indentation: no)."""
        if self._module is None or isinstance(
            old, (cst.BaseStatement, cst.BaseSuite, cst.SimpleStatementLine)
        ):
            return None
        if getattr(old, "lpar", None):
            return None  # the position excludes a node's own parentheses, its code includes them
        pos = self.get_metadata(PositionProvider, old)
        start, end = (
            self._offset(pos.start.line, pos.start.column),
            self._offset(pos.end.line, pos.end.column),
        )
        return start, end, self._module.code_for_node(new)

    def _reorder_splice(
        self, body: Sequence[cst.CSTNode], order: Sequence[int]
    ) -> tuple[int, int, str] | None:
        """Reordered whole statements (with their leading comment/blank lines) as a splice of full lines."""
        spans = []
        for stmt in body:
            if getattr(stmt, "decorators", ()) or not hasattr(stmt, "leading_lines"):
                return None  # a decorator's lines are outside the statement's position
            pos = self.get_metadata(PositionProvider, stmt)
            first = pos.start.line - len(stmt.leading_lines)
            spans.append((self._starts[first - 1], self._starts[pos.end.line]))
        if any(a[1] != b[0] for a, b in zip(spans, spans[1:], strict=False)):
            return None  # something between two statements: not a plain run of lines
        if self._module is None:
            return None
        text = [self._source[a:b] for a, b in spans]
        return spans[0][0], spans[-1][1], "".join(text[k] for k in order)

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _span(self, node: cst.CSTNode) -> range:
        pos = self.get_metadata(PositionProvider, node)
        return range(pos.start.line, pos.end.line + 1)

    def _add(
        self,
        family: str,
        old: cst.CSTNode,
        new: cst.CSTNode,
        what: str,
        line: int | None = None,
        splice: tuple[int, int, str] | None = None,
    ) -> None:
        if family not in self.families:
            return
        line = self._line(old) if line is None else line
        splice = splice or self._splice(old, new)
        self.edits.append(_Edit(old, new, f"{family}: {what} at line {line}", line, family, splice))

    def _at(self, node: cst.CSTNode) -> bool:
        return self._line(node) in self.lines

    # operators, operands, constants in expressions
    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if not self._at(node):
            return
        for alt in _alternatives(node.operator, _ARITH_GROUPS):
            new = node.with_changes(operator=_same_ws(alt, node.operator))
            self._add("operators", node, new, f"{_code(node)!r} -> {_code(new)!r}")
        if isinstance(node.operator, cst.Multiply):
            new = node.with_changes(operator=_same_ws(cst.Power, node.operator))
            self._add("operators", node, new, f"{_code(node)!r} -> {_code(new)!r}")
        self._swap_operands(node)
        left, right = _int_value(node.left), _int_value(node.right)
        if left is not None and right is not None:  # the modifier may change both literals at once
            for dl, dr in itertools.product((-1, 1), repeat=2):
                new = node.with_changes(
                    left=_int_node(left + dl, node.left), right=_int_node(right + dr, node.right)
                )
                self._add("constants", node, new, f"{_code(node)!r} -> {_code(new)!r}")

    def _swap_operands(self, node: cst.BinaryOperation | cst.BooleanOperation) -> None:
        if _code(node.left) != _code(node.right):
            new = node.with_changes(left=node.right, right=node.left)
            self._add("operands", node, new, f"{_code(node)!r} -> {_code(new)!r}")

    def visit_BooleanOperation(self, node: cst.BooleanOperation) -> None:
        if not self._at(node):
            return
        alt = cst.Or if isinstance(node.operator, cst.And) else cst.And
        new = node.with_changes(operator=_same_ws(alt, node.operator))
        self._add("operators", node, new, f"{_code(node)!r} -> {_code(new)!r}")
        self._swap_operands(node)

    def visit_Comparison(self, node: cst.Comparison) -> None:
        if not self._at(node):
            return
        for i, target in enumerate(node.comparisons):
            for alt in _alternatives(target.operator, _CMP_GROUPS):
                new_target = target.with_changes(operator=_same_ws(alt, target.operator))
                comparisons = [*node.comparisons[:i], new_target, *node.comparisons[i + 1 :]]
                new = node.with_changes(comparisons=comparisons)
                self._add("operators", node, new, f"{_code(node)!r} -> {_code(new)!r}")
        if len(node.comparisons) == 1 and _code(node.left) != _code(node.comparisons[0].comparator):
            target = node.comparisons[0]
            new = node.with_changes(
                left=target.comparator, comparisons=[target.with_changes(comparator=node.left)]
            )
            self._add("operands", node, new, f"{_code(node)!r} -> {_code(new)!r}")

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        if not self._at(node):
            return
        for alt in _alternatives(node.operator, _AUG_GROUPS):
            new = node.with_changes(operator=_same_ws(alt, node.operator))
            self._add("operators", node, new, f"{_code(node).strip()!r} -> {_code(new).strip()!r}")

    def visit_Integer(self, node: cst.Integer) -> None:
        value = _int_value(node)
        if value is None or not self._at(node):
            return
        for delta in (1, -1):
            new = _int_node(value + delta, node)
            self._add("constants", node, new, f"{node.value} -> {_code(new)}")

    def visit_UnaryOperation(self, node: cst.UnaryOperation) -> None:
        if not self._at(node):
            return
        value = _int_value(node)
        if value is not None and isinstance(node.expression, cst.Integer):
            for delta in (1, -1):
                new = _int_node(value + delta, node)
                self._add("constants", node, new, f"{_code(node)} -> {_code(new)}")
        if isinstance(node.operator, cst.Not):
            self._add("control", node, node.expression, f"remove 'not' in {_code(node)!r}")

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in ("True", "False") and self._at(node):
            new = node.with_changes(value="False" if node.value == "True" else "True")
            self._add("constants", node, new, f"{node.value} -> {new.value}")

    def visit_Slice(self, node: cst.Slice) -> None:
        if not self._at(node):
            return
        for attr in ("lower", "upper"):
            bound = getattr(node, attr)
            if bound is None or _int_value(bound) is not None:
                continue  # literals are handled by visit_Integer
            for delta in (1, -1):
                new = node.with_changes(**{attr: _shift(bound, delta)})
                self._add(
                    "constants", node, new, f"slice {attr} {_code(bound)} -> {_code(_shift(bound, delta))}"
                )

    def visit_Call(self, node: cst.Call) -> None:
        if not (isinstance(node.func, cst.Name) and node.func.value == "range" and self._at(node)):
            return
        for i, arg in enumerate(node.args[:2]):
            if _int_value(arg.value) is not None or arg.keyword is not None:
                continue
            for delta in (1, -1):
                args = [*node.args[:i], arg.with_changes(value=_shift(arg.value, delta)), *node.args[i + 1 :]]
                new = node.with_changes(args=args)
                self._add("constants", node, new, f"{_code(node)!r} -> {_code(new)!r}")

    # control flow
    def visit_If(self, node: cst.If) -> None:
        if not self._at(node):
            return
        if isinstance(node.orelse, cst.Else):
            new = node.with_changes(body=node.orelse.body, orelse=node.orelse.with_changes(body=node.body))
            self._add("control", node, new, f"swap if/else bodies of 'if {_code(node.test)}'")
        new = node.with_changes(test=_negate(node.test))
        self._add("control", node, new, f"negate 'if {_code(node.test)}'")

    def visit_While(self, node: cst.While) -> None:
        if self._at(node):
            self._add(
                "control",
                node,
                node.with_changes(test=_negate(node.test)),
                f"negate 'while {_code(node.test)}'",
            )

    def visit_IfExp(self, node: cst.IfExp) -> None:
        if not self._at(node):
            return
        new = node.with_changes(body=node.orelse, orelse=node.body)
        self._add("control", node, new, f"swap branches of {_code(node)!r}")
        self._add(
            "control", node, node.with_changes(test=_negate(node.test)), f"negate test of {_code(node)!r}"
        )

    # statement order
    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        body = list(node.body)
        for i, stmt in enumerate(body):
            if self._line(stmt) not in self.lines:
                continue
            for j in (i, i - 1):
                if 0 <= j < len(body) - 1:
                    order = [*range(j), j + 1, j, *range(j + 2, len(body))]
                    swapped = [body[k] for k in order]
                    self._add(
                        "statements",
                        node,
                        node.with_changes(body=swapped),
                        f"swap statements at lines {self._line(body[j])} and {self._line(body[j + 1])}",
                        line=self._line(stmt),
                        splice=self._reorder_splice(body, order),
                    )

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if "statements" not in self.families or not isinstance(node.body, cst.IndentedBlock):
            return
        body = list(node.body.body)
        if not (2 <= len(body) <= _MAX_PERMUTED) or not self.lines.intersection(self._span(node)):
            return
        for order in _plausible_orders(body)[:_MAX_ORDERS]:
            new = node.body.with_changes(body=[body[k] for k in order])
            self._add(
                "statements",
                node.body,
                new,
                f"reorder body of {node.name.value}() as {list(order)}",
                line=self._line(node),
                splice=self._reorder_splice(body, order),
            )


def _names(node: cst.CSTNode) -> tuple[set[str], set[str]]:
    """(names a statement binds, names it reads), approximately: enough to order a shuffled body."""
    bound: set[str] = set()
    read: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_AssignTarget(self, n: cst.AssignTarget) -> None:
            bound.update(x.value for x in _target_names(n.target))

        def visit_AnnAssign(self, n: cst.AnnAssign) -> None:
            bound.update(x.value for x in _target_names(n.target))

        def visit_For(self, n: cst.For) -> None:
            bound.update(x.value for x in _target_names(n.target))

        def visit_AsName(self, n: cst.AsName) -> None:
            bound.update(x.value for x in _target_names(n.name))

        def visit_Name(self, n: cst.Name) -> None:
            read.add(n.value)

    node.visit(_V())
    if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
        bound.add(node.name.value)
    return bound, read - bound


def _target_names(node: cst.CSTNode) -> list[cst.Name]:
    if isinstance(node, cst.Name):
        return [node]
    if isinstance(node, (cst.Tuple, cst.List)):
        return [n for el in node.elements for n in _target_names(el.value)]
    return []


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString)
    )


def _ends_flow(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[-1], (cst.Return, cst.Raise))


def _plausible_orders(body: Sequence[cst.CSTNode]) -> list[tuple[int, ...]]:
    """Orders of a function body other than the current one where every read of a name bound in the
    body comes after its binding, a docstring comes first and a return/raise comes last."""
    info = [_names(s) for s in body]
    n = len(body)
    before = {
        (i, j)
        for i in range(n)
        for j in range(n)
        if i != j and info[i][0] & info[j][1] and not info[j][0] & info[i][0]
    }
    orders = []
    for order in itertools.permutations(range(n)):
        if order == tuple(range(n)):
            continue
        pos = {k: p for p, k in enumerate(order)}
        if any(_is_docstring(body[k]) and pos[k] != 0 for k in range(n)):
            continue
        if any(_ends_flow(body[k]) and pos[k] != n - 1 for k in range(n)):
            continue
        if all(pos[i] < pos[j] for i, j in before):
            orders.append(order)
    return orders


def _collect(source: str, lines: Iterable[int], families: set[str]) -> tuple[cst.Module, list[_Edit]] | None:
    """The parsed module and every edit of ``families`` at ``lines``, in the lines' order (None: no parse)."""
    unknown = families - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown mutation families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    rank = {line: r for r, line in enumerate(dict.fromkeys(lines))}
    try:
        wrapper = MetadataWrapper(cst.parse_module(source))
    except cst.ParserSyntaxError:
        return None
    collector = _Collector(set(rank), families, wrapper.module, source)
    wrapper.visit(collector)
    edits = sorted(enumerate(collector.edits), key=lambda ie: (rank.get(ie[1].line, len(rank)), ie[0]))
    return wrapper.module, [edit for _, edit in edits]


def _render(path: str, source: str, module: cst.Module, edits: Iterable[_Edit]) -> list[Candidate]:
    """Apply each edit on its own; identical texts once, texts that do not compile dropped."""
    seen = {source}
    out = []
    for edit in edits:
        if edit.splice is not None:
            start, end, new = edit.splice
            text = source[:start] + new + source[end:]
        else:
            text = module.deep_replace(edit.old, edit.new).code
        if text in seen or not _parses(text):
            continue
        seen.add(text)
        out.append(Candidate(path, text, edit.description, edit.line, edit.family))
    return out


def mutate_source(path: str, source: str, lines: Iterable[int], families: Iterable[str]) -> list[Candidate]:
    """Candidate rewrites of one file at the given lines, ordered by the lines' order, then by position.

    Identical texts are kept once; a file libcst cannot parse gives no candidates.
    """
    collected = _collect(source, lines, set(families))
    return [] if collected is None else _render(path, source, *collected)


def _parses(text: str) -> bool:
    try:
        compile(text, "<candidate>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def mutate_sites(
    read: Callable[[str], str],
    sites: Sequence[tuple[str, int]],
    families: Iterable[str],
    max_lines: int | None = None,
) -> list[Candidate]:
    """Candidates for ranked (file, line) sites across files, in site order; ``read(path)`` gives a file's text.

    With ``max_lines``, only the first that many sites where the families have an edit are rendered: finding
    edits is one cheap walk per file, rendering each one is a full-module rewrite, and a statement-reordering
    family has dozens per line.
    """
    families = set(families)
    by_file: dict[str, list[int]] = {}
    for path, line in sites:
        by_file.setdefault(path, []).append(line)
    sources = {path: read(path) for path in by_file}
    collected = {path: _collect(sources[path], lines, families) for path, lines in by_file.items()}
    with_edits = {(path, e.line) for path, c in collected.items() if c for e in c[1]}
    keep = [site for site in dict.fromkeys(sites) if site in with_edits][:max_lines]
    order = {site: r for r, site in enumerate(keep)}
    merged = []
    for path, c in collected.items():
        if c is not None:
            edits = [e for e in c[1] if (path, e.line) in order]
            merged += _render(path, sources[path], c[0], edits)
    return sorted(merged, key=lambda c: order[(c.file, c.line)])
