"""Fault localisation: traceback frames in repository source, widened to their function, and Ochiai."""

from __future__ import annotations

import math

from envs.agents.localize import function_lines, localize, ochiai, traceback_frames

TB = """\
tests/test_compare.py:10: in test_clamp
    assert compare.clamp(42, 0, 10) == 10
calc/compare.py:12: in clamp
    return helper(value)
calc/compare.py:3: in helper
    raise ValueError(value)
E   ValueError: 42
  File "/site-packages/other/lib.py", line 5, in f
  File "/repo/calc/strings.py", line 8, in g
"""

SOURCE = "def helper(v):\n    x = v\n    raise ValueError(x)\n\n\ndef clamp(value):\n    return helper(value)\n"


def test_frames_are_repository_source_only_innermost_first():
    frames = traceback_frames(TB, "/repo")
    assert frames == [("calc/strings.py", 8), ("calc/compare.py", 3), ("calc/compare.py", 12)]


def test_function_lines_of_the_innermost_function():
    assert function_lines(SOURCE, 3) == [1, 2, 3]
    assert function_lines(SOURCE, 7) == [6, 7]
    assert function_lines(SOURCE, 4) == []
    assert function_lines("def (:", 1) == []


def test_ochiai_matches_the_formula():
    coverage = {"t1": {"a.py": [1, 2]}, "t2": {"a.py": [2, 3]}, "t3": {"a.py": [2]}}
    scores = ochiai(coverage, failed={"t1", "t2"})
    assert math.isclose(scores[("a.py", 1)], 1 / math.sqrt(2 * 1))
    assert math.isclose(scores[("a.py", 2)], 2 / math.sqrt(2 * 3))
    assert ("a.py", 4) not in scores


def test_ranking_puts_frames_first_then_spectrum_then_function_lines():
    failures = {"t_fail": "calc/compare.py:3: in helper\n    raise ValueError(x)\n"}
    coverage = {"t_fail": {"calc/compare.py": [1, 2, 3], "calc/other.py": [9]},
                "t_pass": {"calc/compare.py": [1], "calc/other.py": [9]}}
    sites = localize(failures, "/repo", coverage, failed={"t_fail"}, read=lambda p: SOURCE)
    ranked = [(s.file, s.line) for s in sites]
    assert ranked[0] == ("calc/compare.py", 3)  # the raising frame
    assert ranked.index(("calc/compare.py", 2)) < ranked.index(("calc/compare.py", 1))  # only the failing test runs line 2
    assert ranked == sorted(ranked, key=lambda fl: -next(s.score for s in sites if (s.file, s.line) == fl))


def test_assertion_in_the_test_falls_back_to_the_spectrum():
    failures = {"t": "tests/test_a.py:4: in test_a\n    assert f() == 1\nE   assert 2 == 1\n"}
    coverage = {"t": {"a.py": [5, 6]}, "ok": {"a.py": [5]}}
    sites = localize(failures, "/repo", coverage, failed={"t"})
    assert [(s.file, s.line) for s in sites][:2] == [("a.py", 6), ("a.py", 5)]
