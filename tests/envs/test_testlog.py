"""Test command framing and parsing, on real pytest output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

from hrm_spawn.envs.results import TestReport
from hrm_spawn.envs.testlog import (
    KILLED_EXIT,
    MISSING,
    evaluate_report,
    extract_test_output,
    parse_report,
    pytest_command,
    test_env,
)

SAMPLE_TESTS = """\
import time
import pytest


def test_ok():
    assert 1 + 1 == 2


def test_bad():
    assert 1 + 1 == 3, "arithmetic is broken"


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False


@pytest.mark.parametrize("text", ["a b", "plain"])
def test_spaced(text):
    assert text


def test_sleepy():
    time.sleep(float(__import__("os").environ.get("SLEEP", "0")))
"""


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    return tmp_path


def _run(directory: Path, targets: list[str], timeout_s: float | None = None, extra_env: str = "") -> str:
    command = pytest_command(sys.executable, targets, test_env(["."], str(directory)), timeout_s=timeout_s)
    proc = subprocess.run(["bash", "-c", extra_env + command], cwd=directory, capture_output=True, text=True)
    return proc.stdout + proc.stderr + f"\nEXIT={proc.returncode}"


def test_command_is_framed_and_isolated_from_the_repo_config():
    command = pytest_command("/venv/bin/python", ["tests/t.py::test_a b"], {"COLUMNS": "400"}, timeout_s=2.5)
    assert command.startswith(f"echo '{START_TEST_OUTPUT}'")
    assert f"echo '{END_TEST_OUTPUT}'" in command
    assert "timeout -s KILL 2.5 env COLUMNS=400 /venv/bin/python -m pytest" in command
    for flag in ("--verbose", "no:cacheprovider", "addopts="):
        assert flag in command
    assert "'tests/t.py::test_a b'" in command  # quoted: one argument


def test_env_joins_pythonpath_to_the_repo():
    env = test_env([".", "src", "/abs/lib"], "/work/repo")
    assert env["PYTHONPATH"] == "/work/repo:/work/repo/src:/abs/lib"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["COLUMNS"] == "400"


def test_section_ignores_text_outside_the_markers():
    log = f"noise PASSED\n{START_TEST_OUTPUT}\nt.py::test_a PASSED\n{END_TEST_OUTPUT}\nafter.py::x FAILED\n"
    assert extract_test_output(log).strip() == "t.py::test_a PASSED"
    # Killed before END: everything after START counts.
    assert "t.py::test_b" in extract_test_output(f"{START_TEST_OUTPUT}\nt.py::test_b PASSED\n")


def test_parse_real_pytest_run(sample_dir: Path):
    report = parse_report(_run(sample_dir, []))
    assert report.status == {
        "test_sample.py::test_ok": "PASSED",
        "test_sample.py::test_bad": "FAILED",
        "test_sample.py::test_skipped": "SKIPPED",
        "test_sample.py::test_known_failure": "XFAIL",
        "test_sample.py::test_spaced[a b]": "PASSED",  # dropped by SWE-smith's parser, recovered here
        "test_sample.py::test_spaced[plain]": "PASSED",
        "test_sample.py::test_sleepy": "PASSED",
    }
    assert "arithmetic is broken" in report.log_tail


def test_parse_selected_ids_including_one_with_spaces(sample_dir: Path):
    ids = ["test_sample.py::test_spaced[a b]", "test_sample.py::test_bad"]
    report = parse_report(_run(sample_dir, ids))
    assert report.status == {ids[0]: "PASSED", ids[1]: "FAILED"}


def test_killed_run_keeps_the_results_printed_before(sample_dir: Path):
    output = _run(sample_dir, [], timeout_s=6, extra_env="export SLEEP=30; ")
    assert output.endswith(f"EXIT={KILLED_EXIT}")
    report = parse_report(output, timed_out=True)
    assert report.status["test_sample.py::test_ok"] == "PASSED"
    assert "test_sample.py::test_sleepy" not in report.status


def test_evaluate_report_counts_and_marks_missing():
    report = TestReport(status={"a": "PASSED", "b": "FAILED", "c": "XFAIL", "d": "PASSED"}, duration_s=1.5)
    ev = evaluate_report(report, ["a", "b"], ["c", "d", "gone"])
    assert (ev.f2p_passed, ev.f2p_total, ev.p2p_passed, ev.p2p_total) == (1, 2, 2, 3)
    assert ev.tests["gone"] == MISSING and ev.tests["b"] == "FAILED"
    assert ev.pass_rate == pytest.approx(0.5 * 2 / 3)
    assert not ev.resolved and ev.error is None
    timed = evaluate_report(TestReport(status={"a": "PASSED"}, timed_out=True), ["a"], [])
    assert timed.resolved and timed.error == "test run timed out"


class _Profile:
    """The two things ProfileFraming reads of a swesmith profile, for command-line tests without swesmith."""

    test_cmd = "source /opt/miniconda3/bin/activate; conda activate testbed; pytest --verbose -rA"

    def get_test_cmd(self, instance: dict) -> tuple[str, list]:
        return self.test_cmd + " tests/test_a.py", []

    def log_parser(self, log: str) -> dict[str, str]:
        return {line.split()[0]: line.split()[1] for line in log.splitlines() if len(line.split()) == 2}


def test_profile_command_in_an_image_and_on_a_local_copy() -> None:
    from hrm_spawn.envs.testlog import ProfileFraming

    image = ProfileFraming(_Profile(), {})
    assert image.test_command(None) == _Profile.test_cmd + " tests/test_a.py"
    local = ProfileFraming(_Profile(), {}, "/v/bin/python", {"PYTHONPATH": "/r"})
    assert (
        local.test_command(None) == "env PYTHONPATH=/r /v/bin/python -m pytest --verbose -rA tests/test_a.py"
    )
    assert local.test_command(["t.py::x[a b]"]).endswith("-rA 't.py::x[a b]'")


def test_profile_log_is_read_between_the_traced_markers(tmp_path: Path) -> None:
    from hrm_spawn.envs.testlog import ProfileFraming

    class Printing(_Profile):
        def get_test_cmd(self, instance: dict) -> tuple[str, list]:
            return "echo noise; echo 't::a PASSED'", []

    framing = ProfileFraming(Printing(), {})
    script = f"echo 'before FAILED'; {framing.command(str(tmp_path), None, 30)}"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    assert framing.parse(out, 1.0, False).status == {"t::a": "PASSED"}  # "before FAILED" is outside
    killed = out.split("+ : '>>>>> End")[0]  # a run killed before the end marker keeps what it printed
    assert framing.parse(killed, 1.0, True).status == {"t::a": "PASSED"}
