"""Fault localisation: traceback frames in repository source, widened to their function, the failing
test line's callees, and Ochiai (report-only ``__repr__`` code damped)."""

from __future__ import annotations

import math

from hrm_spawn.envs.agents.localize import (
    called_names,
    failing_test_lines,
    function_lines,
    localize,
    ochiai,
    statement_lines,
    traceback_frames,
    weighted_ochiai,
)

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

SOURCE = (
    "def helper(v):\n    x = v\n    raise ValueError(x)\n\n\ndef clamp(value):\n    return helper(value)\n"
)


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
    coverage = {
        "t_fail": {"calc/compare.py": [1, 2, 3], "calc/other.py": [9]},
        "t_pass": {"calc/compare.py": [1], "calc/other.py": [9]},
    }
    sites = localize(failures, "/repo", coverage, failed={"t_fail"}, read=lambda p: SOURCE)
    ranked = [(s.file, s.line) for s in sites]
    assert ranked[0] == ("calc/compare.py", 3)  # the raising frame
    assert ranked.index(("calc/compare.py", 2)) < ranked.index(
        ("calc/compare.py", 1)
    )  # only the failing test runs line 2
    assert ranked == sorted(ranked, key=lambda fl: -next(s.score for s in sites if (s.file, s.line) == fl))


def test_assertion_in_the_test_falls_back_to_the_spectrum():
    failures = {"t": "tests/test_a.py:4: in test_a\n    assert f() == 1\nE   assert 2 == 1\n"}
    coverage = {"t": {"a.py": [5, 6]}, "ok": {"a.py": [5]}}
    sites = localize(failures, "/repo", coverage, failed={"t"})
    assert [(s.file, s.line) for s in sites][:2] == [("a.py", 6), ("a.py", 5)]


# A table whose id counter is run by every test (tinydb's Table._get_next_id): Ochiai alone cannot tell it
# from the other lines every test runs.
TABLE = """\
class Table:
    def __init__(self):
        self.docs = {}
        self.next_id = 1

    def __repr__(self):
        return 'Table(total={})'.format(len(self))

    def __len__(self):
        return len(self.docs)

    def _get_next_id(self):
        \"\"\"The next id.\"\"\"
        value = self.next_id
        self.next_id = value + 2
        return value

    def insert(self, doc):
        doc_id = self._get_next_id()
        self.docs[doc_id] = doc
        return doc_id
"""
ASSERT_TB = """\
    def test_ids():
        t = Table()
        t.insert({})
>       assert t._get_next_id() == 2
E       AssertionError: assert 3 == 2
E        +  where 3 = _get_next_id()

tests/test_ids.py:5: AssertionError
"""
INSERT = [3, 4, 12, 14, 15, 16, 18, 19, 20, 21]  # every test runs these lines
REPR = [6, 7, 9, 10]  # pytest runs these while it prints the failed assert's values


def _ranks(sites, *lines):
    order = [(s.file, s.line) for s in sites]
    return [order.index(("calc/table.py", n)) + 1 for n in lines]


def test_failing_test_lines_and_the_names_they_call():
    assert failing_test_lines(ASSERT_TB) == ["assert t._get_next_id() == 2"]
    assert failing_test_lines(TB) == ["assert compare.clamp(42, 0, 10) == 10"]
    assert "_get_next_id" in called_names(["assert t._get_next_id() == 2"])
    assert called_names(["assert len(db) == 1 and isinstance(db, T)"]) == {"__len__"}


def test_statement_lines_skip_docstrings_comments_and_blanks():
    lines = statement_lines(TABLE)
    assert {14, 15, 16} <= lines and 13 not in lines and 5 not in lines


def test_callee_of_the_failing_assert_beats_lines_every_test_runs():
    coverage = {
        "fail": {"calc/table.py": INSERT + REPR},
        **{f"pass{i}": {"calc/table.py": INSERT} for i in range(5)},
    }
    sites = localize({"fail": ASSERT_TB}, "/repo", coverage, failed={"fail"}, read=lambda p: TABLE)
    (bug,) = _ranks(sites, 15)
    assert bug <= 3  # _get_next_id's statements come first: the assert called it
    # __repr__ and the __len__ it calls ran only in the failing test, yet rank below the callee
    assert min(_ranks(sites, *REPR)) > bug
    # the spectrum alone ranks the repr lines first and ties the bug line with every INSERT line
    spectrum = ochiai(coverage, {"fail"})
    assert spectrum[("calc/table.py", 15)] < spectrum[("calc/table.py", 7)]
    assert spectrum[("calc/table.py", 15)] == spectrum[("calc/table.py", 19)]


def test_unexecuted_lines_after_the_raise_in_the_innermost_function_rank_high():
    source = "def f(x):\n    y = g(x)\n    z = 1\n    return y + z\n\n\ndef g(x):\n    return x\n"
    failures = {"t": "calc/f.py:2: in f\n    y = g(x)\nE   NameError\n"}
    helpers = list(range(1, 11))  # half-suspicious lines elsewhere (Ochiai 0.71)
    coverage = {"t": {"calc/f.py": [1, 2], "calc/other.py": helpers}, "ok": {"calc/other.py": helpers}}
    sites = localize(failures, "/repo", coverage, failed={"t"}, read=lambda p: source)
    ranked = [(s.file, s.line) for s in sites]
    assert ranked[0] == ("calc/f.py", 2)
    assert {("calc/f.py", 3), ("calc/f.py", 4)} <= set(ranked[:3])  # never ran, but follow the raise


def test_equal_scores_prefer_lines_all_failing_tests_ran_then_editable_lines():
    source = "def f(a):\n    b = a\n    return b\n\n\ndef g(a):\n    c = a + 1\n    return c\n"
    coverage = {"t1": {"m.py": [1, 2, 3, 6, 7, 8]}, "t2": {"m.py": [1, 2, 3, 6, 7, 8]}}
    sites = localize({}, "/repo", coverage, failed={"t1", "t2"}, read=lambda p: source)
    ranked = [s.line for s in sites]
    assert ranked[0] == 7  # the only line with an operator among equals
    assert ranked.index(1) > ranked.index(8) and ranked.index(6) > ranked.index(8)  # def lines last


def test_passing_tests_clear_a_line_by_their_similarity_to_the_failing_ones():
    # lines 1 and 2 each run by the failing test and one passing test: equal for plain Ochiai. The test
    # running line 1 does what the failing one does; the one running line 2 shares only that line.
    coverage = {
        "fail": {"m.py": [1, 2, 3, 4]},
        "near": {"m.py": [1, 3, 4]},
        "far": {"m.py": [2, *range(10, 30)]},
    }
    plain, weighted = ochiai(coverage, {"fail"}), weighted_ochiai(coverage, {"fail"})
    assert math.isclose(plain[("m.py", 1)], plain[("m.py", 2)])
    assert weighted[("m.py", 2)] > weighted[("m.py", 1)]
    assert math.isclose(weighted[("m.py", 2)], 1 / math.sqrt(1 + 1 / 24))  # Jaccard 1/24
    sites = localize({}, "/repo", coverage, failed={"fail"})
    assert [s.line for s in sites][:1] == [2]
