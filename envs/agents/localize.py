"""Fault localisation from what the failing tests show.

Two signals, merged into one ranking of (file, line, score):
- traceback frames inside repository source (innermost first), widened to the lines of the function
  each frame is in, because the raising line is often downstream of the faulty one;
- Ochiai over per-test line coverage: ef / sqrt(total_failed * (ef + ep)), which finds the fault when
  the only frame is the test's own ``assert``.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# "path/x.py:12: in func" (pytest --tb=short / long) and 'File "/abs/x.py", line 12, in func' (native).
_PYTEST_FRAME = re.compile(r"^(?P<path>[^\s:][^:\n]*\.py):(?P<line>\d+):", re.MULTILINE)
_NATIVE_FRAME = re.compile(r'File "(?P<path>[^"\n]+\.py)", line (?P<line>\d+)')
FRAME_SCORE = 1.0  # the innermost repository frame
FUNCTION_SCORE = 0.5  # other lines of a frame's function, before Ochiai is consulted


@dataclass(frozen=True)
class Site:
    file: str
    line: int
    score: float


def is_test_path(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    base = parts[-1]
    return (base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"
            or "tests" in parts[:-1] or "test" in parts[:-1])


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
        if rel and not is_test_path(rel) and (rel, line) not in frames:
            frames.append((rel, line))
    return frames


def function_lines(source: str, line: int) -> list[int]:
    """Lines of the innermost function (or the module) that contains ``line``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    best: ast.AST | None = None
    for node in ast.walk(tree):
        is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if is_function and node.lineno <= line <= (node.end_lineno or 0) and (best is None or node.lineno >= best.lineno):
            best = node
    if best is None:
        return []
    return list(range(best.lineno, (best.end_lineno or best.lineno) + 1))


def ochiai(coverage: Mapping[str, Mapping[str, Iterable[int]]], failed: set[str]) -> dict[tuple[str, int], float]:
    """Ochiai suspiciousness of each covered line; ``coverage`` is test id -> file -> lines."""
    ef: dict[tuple[str, int], int] = {}
    ep: dict[tuple[str, int], int] = {}
    for test, files in coverage.items():
        counts = ef if test in failed else ep
        for path, lines in files.items():
            for line in lines:
                counts[(path, line)] = counts.get((path, line), 0) + 1
    total_failed = len(failed & set(coverage)) or 1
    return {site: n / math.sqrt(total_failed * (n + ep.get(site, 0))) for site, n in ef.items()}


def localize(
    failures: Mapping[str, str],
    root: str,
    coverage: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
    failed: Iterable[str] = (),
    read: Callable[[str], str] | None = None,
) -> list[Site]:
    """Rank suspicious source lines: traceback frames first, then their functions, then Ochiai.

    ``failures`` maps failing test ids to their traceback text; ``failed`` are the failing tests of the
    coverage run; ``read(path)`` gives a repository file's text (to widen a frame to its function).
    """
    scores: dict[tuple[str, int], float] = {}

    def bump(site: tuple[str, int], score: float) -> None:
        scores[site] = max(scores.get(site, 0.0), score)

    frame_lists = [traceback_frames(text, root) for text in failures.values()]
    for frames in frame_lists:
        for depth, site in enumerate(frames):
            bump(site, FRAME_SCORE - 0.01 * depth)
    spectrum = ochiai(coverage, set(failed)) if coverage else {}
    for site, score in spectrum.items():
        bump(site, 0.99 * score)  # a traceback frame outranks a perfect spectrum score
    if read is not None:
        for path, line in {s for frames in frame_lists for s in frames}:
            try:
                text = read(path)
            except (OSError, ValueError):
                continue
            for other in function_lines(text, line):
                # inside a frame's function, the spectrum decides; lines it never saw get a floor
                bump((path, other), FUNCTION_SCORE * (0.5 + 0.5 * spectrum.get((path, other), 0.0)))
    ranked = sorted(scores.items(), key=lambda kv: (-round(kv[1], 9), kv[0]))
    return [Site(path, line, score) for (path, line), score in ranked]
