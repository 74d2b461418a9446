"""The validator's fast path (code swapped into a warm, collected session) gives plain pytest's verdicts.

Each candidate names the path it should take, so a fast path that silently fell back (or one that
wrongly took a candidate it cannot apply) fails here too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import checkout_copy
from test_worker import BUGGY, plain_pytest, run_worker

from hrm_spawn.envs.agents.mutate import mutate_source

SHAPES = '''\
"""Boxes."""

SCALE = 2


def _scaled(x):
    return x * SCALE


class Box:
    def __init__(self, width):
        self._width = width

    @property
    def width(self):
        return self._width

    @width.setter
    def width(self, value):
        self._width = value

    def area(self):
        def square(x):
            return x * x

        return square(self._width)

    def doubled(self):
        return [_scaled(v) for v in (self._width,)]


DEFAULT = Box(_scaled(1))  # runs __init__ and _scaled at import
'''

SHAPES_TESTS = """\
from shapes.box import DEFAULT, Box


def test_getter():
    assert Box(3).width == 3


def test_setter():
    box = Box(3)
    box.width = 5
    assert box._width == 5


def test_area():
    assert Box(3).area() == 9


def test_doubled():
    assert Box(3).doubled() == [6]


def test_default():
    assert DEFAULT.width == 2


def test_order():
    assert [name for name in vars(Box) if not name.startswith("__")] == ["width", "area", "doubled"]
"""
SHAPES_IDS = [
    f"tests/test_box.py::test_{name}" for name in ("getter", "setter", "area", "doubled", "default", "order")
]
AREA = """    def area(self):
        def square(x):
            return x * x

        return square(self._width)
"""
DOUBLED = """    def doubled(self):
        return [_scaled(v) for v in (self._width,)]
"""
SCALED = """def _scaled(x):
    return x * SCALE
"""

# (name, old, new, expected path, tests expected to fail); each edit of shapes/box.py alone
SHAPE_EDITS = [
    (
        "getter",
        "        return self._width\n",
        "        return self._width + 1\n",
        "fast",
        {"getter", "default"},
    ),
    ("setter", "self._width = value", "self._width = value + 1", "fast", {"setter"}),
    ("nested", "return x * x", "return x + x", "fast", {"area"}),
    ("comprehension", "[_scaled(v) for", "[_scaled(v) + 1 for", "fast", {"doubled"}),
    (
        "ran_at_import",
        "self._width = width",
        "self._width = width + 1",
        "fresh",
        {"getter", "area", "doubled", "default"},
    ),
    ("module_constant", "SCALE = 2", "SCALE = 3", "fresh", {"doubled", "default"}),
    ("decorator", "    def area(self):", "    @staticmethod\n    def area(self):", "fresh", {"area"}),
    # methods swapped: the same class but for the order of its namespace, which the fast path reorders too
    ("reordered_methods", AREA + "\n" + DOUBLED, DOUBLED + "\n" + AREA, "fast", {"order"}),
    # a def read by module code (DEFAULT = Box(_scaled(1))) is not moved on the fast path
    ("reordered_def_read_at_import", "SCALE = 2\n\n\n" + SCALED, SCALED + "\n\nSCALE = 2\n", "fresh", set()),
]


@pytest.fixture
def buggy_repo(tmp_path: Path, fixture_repo_session, bug_task):
    task = bug_task("operators")
    return checkout_copy(fixture_repo_session, tmp_path / "repo", task.patch), task


@pytest.fixture
def shapes_repo(tmp_path: Path) -> Path:
    root = tmp_path / "shapes_repo"
    for rel, text in {
        "shapes/__init__.py": "",
        "shapes/box.py": SHAPES,
        "tests/test_box.py": SHAPES_TESTS,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _job(f2p: list[str], p2p: list[str], files: list[dict[str, str]], **extra) -> dict:
    return {
        "mode": "validate",
        "f2p": f2p,
        "p2p": p2p,
        "stop_on_fix": False,
        "candidates": [{"id": str(i), "files": f} for i, f in enumerate(files)],
        **extra,
    }


def test_fast_path_verdicts_match_plain_pytest_on_mutants(buggy_repo):
    repo_dir, task = buggy_repo
    source = (repo_dir / BUGGY).read_text()
    cands = mutate_source(BUGGY, source, range(1, 30), ["operators", "operands", "constants", "control"])
    sample = cands[:: max(1, len(cands) // 8)][:8]
    sample += [c for c in cands if "value > high" in c.description and "->" in c.description][:1]
    ids = task.FAIL_TO_PASS + task.PASS_TO_PASS[:10]
    out = run_worker(
        repo_dir,
        _job(task.FAIL_TO_PASS, task.PASS_TO_PASS[:10], [{c.file: c.text} for c in sample], p2p_mode="all"),
    )
    assert out["fast_path"] == "on"
    assert [e["path"] for e in out["results"]] == ["fast"] * len(sample)
    assert (repo_dir / BUGGY).read_text() == source
    verdicts = set()
    for entry, cand in zip(out["results"], sample, strict=True):
        (repo_dir / BUGGY).write_text(cand.text)
        expected = plain_pytest(repo_dir, ids)
        assert {t: entry["status"].get(t) for t in ids} == {t: expected.get(t) for t in ids}, cand.description
        verdicts.add(entry["fixed"])
    assert verdicts == {True, False}  # the sample holds a fix and a non-fix


@pytest.mark.parametrize("name", [edit[0] for edit in SHAPE_EDITS])
def test_each_kind_of_edit_takes_its_path_and_gets_plain_pytest_verdicts(shapes_repo, name):
    """Property getter and setter, a nested function, a comprehension, swapped methods take the fast path;
    a function that ran at import, a module constant, a changed decorator, a moved def that module code
    reads take a fresh import. One candidate before
    and after the edit, so a swap that leaked into later candidates would show too."""
    _, old, new, path, failing = next(e for e in SHAPE_EDITS if e[0] == name)
    edited = SHAPES.replace(old, new, 1)
    assert edited != SHAPES
    files = [{"shapes/box.py": SHAPES}, {"shapes/box.py": edited}, {"shapes/box.py": SHAPES}]
    out = run_worker(shapes_repo, _job(SHAPES_IDS, [], files, p2p_mode="never"))
    first, entry, last = out["results"]
    assert entry["path"] == path, entry.get("fresh_reason")
    (shapes_repo / "shapes/box.py").write_text(edited)
    expected = plain_pytest(shapes_repo, SHAPES_IDS)
    (shapes_repo / "shapes/box.py").write_text(SHAPES)
    assert entry["status"] == expected
    assert {t.split("::test_")[1] for t, s in expected.items() if s != "PASSED"} == failing
    assert first["status"] == last["status"] == dict.fromkeys(SHAPES_IDS, "PASSED")
    assert first["path"] == last["path"] == "fast"


def test_a_hanging_and_a_crashing_candidate_do_not_break_later_ones(buggy_repo):
    repo_dir, task = buggy_repo
    source = (repo_dir / BUGGY).read_text()
    spin = source.replace("    if value < low:", "    while True:\n        pass\n    if value < low:", 1)
    crash = source.replace("    if value < low:", "    import os\n    os._exit(3)\n    if value < low:", 1)
    good = source.replace("value < high", "value > high")
    files = [{BUGGY: spin}, {BUGGY: crash}, {BUGGY: good}]
    out = run_worker(repo_dir, _job(task.FAIL_TO_PASS, [], files, timeout_s=4.0))
    spun, crashed, fixed = out["results"]
    assert [e["path"] for e in out["results"]] == ["fast"] * 3
    assert spun["timed_out"] and spun["f2p_passed"] == 0 and spun["seconds"] < 10
    assert crashed["error"] and crashed["f2p_passed"] == 0 and not crashed["timed_out"]
    assert fixed["fixed"], fixed
    assert (repo_dir / BUGGY).read_text() == source


def test_without_a_warm_session_every_candidate_takes_a_fresh_import(buggy_repo):
    repo_dir, task = buggy_repo
    good = (repo_dir / BUGGY).read_text().replace("value < high", "value > high")
    out = run_worker(repo_dir, _job(task.FAIL_TO_PASS, [], [{BUGGY: good}] * 2, fast=False))
    assert out["fast_path"] == "off"
    assert [(e["path"], e["fixed"]) for e in out["results"]] == [("fresh", True)] * 2
