"""Fault localisation from what the failing tests show.

Signals merged into one ranking of (file, line, score), each raising a line's score, never lowering it:
- traceback frames inside repository source (innermost first);
- Ochiai over per-test line coverage: ef / sqrt(total_failed * (ef + ep)), which finds the fault when
  the only frame is the test's own ``assert``, with each passing test in ep weighted by how similar its
  lines are to the failing tests' (``weighted_ochiai``); code of ``__repr__``/``__str__`` (and what they call)
  counts half, since pytest runs it only to print a failed assert's values;
- floors for the statements of functions the spectrum cannot single out: the innermost frame's function
  (the raising line is often downstream of the faulty one, which may never have run), the functions the
  failing test line calls by name (a line every test runs, like tinydb's ``Table._get_next_id``, ties
  with hundreds of others in Ochiai), and the outer frames' functions; inside a floor, Ochiai orders.
``benchmarks/localization_rank.py`` measures each signal's worth on the built tinydb tasks.
"""

from __future__ import annotations

import ast
import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hrm_spawn.envs.agents.validator.forking import is_test_file

# "path/x.py:12: in func" (pytest --tb=short / long) and 'File "/abs/x.py", line 12, in func' (native).
_PYTEST_FRAME = re.compile(r"^(?P<path>[^\s:][^:\n]*\.py):(?P<line>\d+):", re.MULTILINE)
_NATIVE_FRAME = re.compile(r'File "(?P<path>[^"\n]+\.py)", line (?P<line>\d+)')
FRAME_SCORE = 1.0  # the innermost repository frame
INNERMOST_SCORE = 0.9  # other statements of the innermost frame's function (lines after the raise included)
CALLEE_SCORE = 0.95  # statements of the functions the failing test line calls
FUNCTION_SCORE = 0.25  # statements of the outer frames' functions
WIDEN_TOP = 0.99  # within a widened function Ochiai orders the lines: floor + (WIDEN_TOP - floor) * score
REPORT_DAMPING = 0.5  # spectrum weight of code that only printing a failure runs (see _report_only)
_REPORT = {"__repr__", "__str__", "__format__"}
DEF_DAMPING = 0.5  # a def line runs on every call and holds nothing to mutate but defaults
# operators, comparisons, boolean words and numbers: a line the mutation families can edit
_EDITABLE = re.compile(r"==|!=|[-+*/%<>&|^~]|\b(?:not|and|or|is|in|if|elif|while|True|False|\d+)\b")
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
# builtins that call a dunder of their argument; other builtins and pytest helpers call nothing of ours
_DUNDER = {"len": "__len__", "str": "__str__", "repr": "__repr__", "bool": "__bool__", "hash": "__hash__"}
_NOT_CALLEES = {
    "assert",
    "if",
    "while",
    "for",
    "return",
    "not",
    "and",
    "or",
    "in",
    "is",
    "print",
    "isinstance",
    "type",
    "int",
    "float",
    "dict",
    "list",
    "set",
    "tuple",
    "sorted",
    "range",
    "enumerate",
    "zip",
    "raises",
    "approx",
}


@dataclass(frozen=True)
class Site:
    file: str
    line: int
    score: float


def _relative(path: str, root: str) -> str | None:
    if os.path.isabs(path):
        real = os.path.realpath(path)
        root = os.path.realpath(root)
        if not real.startswith(root.rstrip("/") + "/"):
            return None
        path = os.path.relpath(real, root)
    path = os.path.normpath(path)
    return None if path.startswith("..") else path


def traceback_frames(text: str, root: str) -> list[tuple[str, int]]:
    """Repository source frames in a failure text, innermost first, each once."""
    hits = []
    for regex in (_PYTEST_FRAME, _NATIVE_FRAME):
        hits += [(m.start(), m.group("path"), int(m.group("line"))) for m in regex.finditer(text)]
    frames: list[tuple[str, int]] = []
    for _, path, line in sorted(hits, reverse=True):  # the end of a traceback is its innermost frame
        rel = _relative(path, root)
        if rel and not is_test_file(rel) and (rel, line) not in frames:
            frames.append((rel, line))
    return frames


@dataclass(frozen=True)
class _Index:
    """What ranking needs from one file's syntax tree: (name, first, last) of each function, the lines
    where statements start (docstrings aside) and the ``def`` lines."""

    functions: tuple[tuple[str, int, int], ...]
    statements: frozenset[int]
    defs: frozenset[int]


@functools.lru_cache(maxsize=64)
def _index(source: str) -> _Index:
    """Parsed once per file text: a localisation widens many frames and calls in the same few files."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _Index((), frozenset(), frozenset())
    functions, statements, docstrings = [], set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append((node.name, node.lineno, node.end_lineno or node.lineno))
        if isinstance(node, ast.stmt):
            statements.add(node.lineno)
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            docstrings.add(body[0].lineno)
    return _Index(tuple(functions), frozenset(statements - docstrings), frozenset(f[1] for f in functions))


def function_lines(source: str, line: int) -> list[int]:
    """Lines of the innermost function that contains ``line`` (none at module level)."""
    spans = [(first, last) for _, first, last in _index(source).functions if first <= line <= last]
    if not spans:
        return []
    first, last = max(spans)  # the innermost starts last
    return list(range(first, last + 1))


def statement_lines(source: str) -> set[int]:
    """Lines where a statement starts: the only lines worth a mutation (not docstrings, comments, blanks)."""
    return set(_index(source).statements)


def def_lines(source: str) -> set[int]:
    """The ``def`` lines of every function."""
    return set(_index(source).defs)


def functions_named(source: str, names: set[str]) -> list[tuple[int, int]]:
    """(first, last) line of every function in ``source`` whose name is in ``names``."""
    return [(first, last) for name, first, last in _index(source).functions if name in names]


def ochiai(
    coverage: Mapping[str, Mapping[str, Iterable[int]]], failed: set[str]
) -> dict[tuple[str, int], float]:
    """Ochiai suspiciousness of each covered line; ``coverage`` is test id -> file -> lines."""
    ef, ep = _counts(coverage, failed)
    total_failed = len(failed & set(coverage)) or 1
    return {site: n / math.sqrt(total_failed * (n + ep.get(site, 0))) for site, n in ef.items()}


def weighted_ochiai(
    coverage: Mapping[str, Mapping[str, Iterable[int]]], failed: set[str]
) -> dict[tuple[str, int], float]:
    """Ochiai with each passing test counted by its Jaccard similarity to the failing tests' lines: a
    passing test that runs what the failing ones run clears a line; one that merely shares the set-up
    (every test inserts, so every test runs the id counter) clears it much less."""
    ef, _ = _counts(coverage, failed)
    failing = set(ef)
    ep: dict[tuple[str, int], float] = {}
    for test, files in coverage.items():
        if test in failed:
            continue
        lines = {(path, line) for path, numbers in files.items() for line in numbers}
        weight = len(lines & failing) / (len(lines | failing) or 1)
        for site in lines & failing:  # only lines a failing test ran get a score
            ep[site] = ep.get(site, 0.0) + weight
    total_failed = len(failed & set(coverage)) or 1
    return {site: n / math.sqrt(total_failed * (n + ep.get(site, 0.0))) for site, n in ef.items()}


def _counts(
    coverage: Mapping[str, Mapping[str, Iterable[int]]], failed: set[str]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """How many failing (ef) and passing (ep) tests cover each line."""
    ef: dict[tuple[str, int], int] = {}
    ep: dict[tuple[str, int], int] = {}
    for test, files in coverage.items():
        counts = ef if test in failed else ep
        for path, lines in files.items():
            for line in lines:
                counts[(path, line)] = counts.get((path, line), 0) + 1
    return ef, ep


def failing_test_lines(text: str) -> list[str]:
    """The source lines of the test's own frames in a pytest failure text: the call that failed. Long
    tracebacks mark it with ``>`` above the location line; short ones print it under ``path:N: in test``."""
    out: list[str] = []
    begin = 0
    for match in _PYTEST_FRAME.finditer(text):
        end = text.find("\n", match.end()) + 1 or len(text)
        if is_test_file(match.group("path")):
            if text[match.end() : end].startswith(" in "):
                out.append(text[end:].split("\n", 1)[0].strip())
            else:
                out += [
                    ln[1:].strip() for ln in text[begin : match.start()].splitlines() if ln.startswith(">")
                ]
        begin = end
    return [line for line in out if line]


def called_names(lines: Iterable[str]) -> set[str]:
    """Names a line calls (``f(``, ``obj.f(``, ``len(x)`` as ``__len__``), keywords and builtins aside."""
    names: set[str] = set()
    for line in lines:
        for name in _CALL.findall(line):
            names.add(_DUNDER.get(name, name))
    return names - _NOT_CALLEES


class _Ranking:
    """Scores per (file, line); each signal raises a site's score, never lowers it."""

    def __init__(self, read: Callable[[str], str] | None):
        self.scores: dict[tuple[str, int], float] = {}
        self._read, self._texts = read, {}
        self._def_lines: dict[str, set[int]] = {}
        self._lines: dict[str, list[str]] = {}

    def bump(self, site: tuple[str, int], score: float) -> None:
        self.scores[site] = max(self.scores.get(site, 0.0), score)

    def text(self, path: str) -> str | None:
        if self._read is None:
            return None
        if path not in self._texts:
            try:
                self._texts[path] = self._read(path)
            except (OSError, ValueError):
                self._texts[path] = None
        return self._texts[path]

    def widen(
        self,
        path: str,
        first: int,
        last: int,
        floor: float,
        spectrum: Mapping[tuple[str, int], float],
        covered: set[tuple[str, int]],
    ) -> None:
        """Statement lines of ``first..last`` get ``floor``, raised by their spectrum score towards (never to)
        a traceback frame's."""
        text = self.text(path)
        statements = statement_lines(text) if text is not None else set()
        for line in range(first, last + 1):
            if line in statements or (path, line) in covered:
                self.bump((path, line), floor + (WIDEN_TOP - floor) * spectrum.get((path, line), 0.0))

    def ranked(self, ef: Mapping[tuple[str, int], int]) -> list[Site]:
        """Best first. A ``def`` line (run on every call, nothing to mutate but defaults) drops to half; equal
        scores: the line more failing tests ran first, then one with an operator or a constant (what the
        mutation families edit), then source order."""
        scores = {
            site: score * (DEF_DAMPING if site[1] in self._defs(site[0]) else 1.0)
            for site, score in self.scores.items()
        }

        def key(item: tuple[tuple[str, int], float]) -> tuple:
            (path, line), score = item
            return (-round(score, 9), -ef.get((path, line), 0), not self._editable(path, line), path, line)

        return [Site(path, line, score) for (path, line), score in sorted(scores.items(), key=key)]

    def _defs(self, path: str) -> set[int]:
        if path not in self._def_lines:
            text = self.text(path)
            self._def_lines[path] = def_lines(text) if text is not None else set()
        return self._def_lines[path]

    def _editable(self, path: str, line: int) -> bool:
        if path not in self._lines:
            text = self.text(path)
            self._lines[path] = text.splitlines() if text is not None else []
        lines = self._lines[path]
        return 0 < line <= len(lines) and bool(_EDITABLE.search(lines[line - 1].split("#", 1)[0]))


def localize(
    failures: Mapping[str, str],
    root: str,
    coverage: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
    failed: Iterable[str] = (),
    read: Callable[[str], str] | None = None,
) -> list[Site]:
    """Rank suspicious source lines: traceback frames, then the failing call's functions, then Ochiai.

    ``failures`` maps failing test ids to their traceback text; ``failed`` are the failing tests of the
    coverage run; ``read(path)`` gives a repository file's text (to widen frames and calls to functions).
    """
    failed = set(failed)
    coverage = coverage or {}
    rank = _Ranking(read)
    ef, _ = _counts(coverage, failed)
    spectrum = weighted_ochiai(coverage, failed) if coverage else {}
    frame_lists = [traceback_frames(text, root) for text in failures.values()]
    for frames in frame_lists:
        for depth, site in enumerate(frames):
            rank.bump(site, FRAME_SCORE - 0.01 * depth)
    covered = set(ef)
    damped = _report_only(rank, failures, failed, coverage)
    for site, score in spectrum.items():
        # a traceback frame outranks a perfect spectrum score
        rank.bump(site, 0.99 * score * (REPORT_DAMPING if site in damped else 1.0))
    for frames in frame_lists:
        for depth, (path, line) in enumerate(frames):
            text = rank.text(path)
            span = function_lines(text, line) if text is not None else []
            if span:
                # the innermost frame's function holds the fault more often than any outer frame's
                floor = INNERMOST_SCORE if depth == 0 else FUNCTION_SCORE
                rank.widen(path, span[0], span[-1], floor, spectrum, covered)
    _callees(rank, failures, coverage, failed, spectrum, covered)
    return rank.ranked(ef)


def _report_only(
    rank: _Ranking,
    failures: Mapping[str, str],
    failed: set[str],
    coverage: Mapping[str, Mapping[str, Iterable[int]]],
) -> set[tuple[str, int]]:
    """Lines of ``__repr__``/``__str__`` and of the functions they call by name: pytest runs them only to
    print a failed assert's values, so only failing tests cover them. Not when the failing line calls them."""
    wanted = called_names(line for text in failures.values() for line in failing_test_lines(text))
    out: set[tuple[str, int]] = set()
    for path in sorted({path for test in failed & set(coverage) for path in coverage[test]}):
        text = rank.text(path)
        if text is None:
            continue
        reprs = functions_named(text, _REPORT - wanted)
        lines = text.splitlines()
        called = called_names(lines[i - 1] for first, last in reprs for i in range(first, last + 1)) - wanted
        for first, last in reprs + functions_named(text, called):
            out.update((path, line) for line in range(first, last + 1))
    return out


def _callees(
    rank: _Ranking,
    failures: Mapping[str, str],
    coverage: Mapping[str, Mapping[str, Iterable[int]]],
    failed: set[str],
    spectrum: Mapping[tuple[str, int], float],
    covered: set[tuple[str, int]],
) -> None:
    """Functions the failing test line calls by name, in files the failing tests ran, get a floor: when a
    test's ``assert`` is its only frame, the wrong value came from one of them (Table._get_next_id)."""
    names = called_names(line for text in failures.values() for line in failing_test_lines(text))
    if not names:
        return
    files = sorted({path for test in failed & set(coverage) for path in coverage[test]})
    for path in files:
        text = rank.text(path)
        for first, last in functions_named(text, names) if text is not None else []:
            if any((path, line) in covered for line in range(first, last + 1)):
                rank.widen(path, first, last, CALLEE_SCORE, spectrum, covered)
