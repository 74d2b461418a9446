"""Test command framing and parsing for Python repositories, with SWE-smith's own log parser.

The command prints swebench's START/END markers around a verbose pytest run, so that only the test
output (not setup noise) is parsed. Parsing uses ``PythonProfile.log_parser`` from swesmith, the same
parser SWE-smith validates tasks with; test ids containing spaces, which that parser drops (it takes the
first non-blank token of a line), are recovered here from the verbose result lines.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from typing import Any

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

from hrm_spawn.envs.results import ERROR, FAILED, PASSED, SKIPPED, XFAIL, Evaluation, TestReport

KILLED_EXIT = 137  # what `timeout -s KILL` returns when it had to kill the run
PYTEST_ARGS = ["--verbose", "--color=no", "-p", "no:cacheprovider", "-o", "addopts="]
LOG_TAIL_CHARS = 4000
MISSING = "MISSING"  # a requested test that the run did not report (not collected, crashed, timed out)

_STATUSES = (PASSED, FAILED, SKIPPED, ERROR, XFAIL)
_PERCENT_RE = re.compile(r"\s+\[\s*\d+%\]\s*$")  # the "[ 50%]" progress column of verbose pytest


def test_env(pythonpath: list[str], repo_dir: str) -> dict[str, str]:
    """Environment of a test run: import path from the RepoEnv, no .pyc files, wide lines."""
    paths = [_join(repo_dir, p) for p in pythonpath]
    return {"PYTHONPATH": ":".join(paths), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "400"}


test_env.__test__ = False  # a helper, not a test, when a test module imports it


def _join(root: str, rel: str) -> str:
    if rel.startswith("/"):
        return rel
    rel = rel.strip("/")
    return root if rel in ("", ".") else f"{root.rstrip('/')}/{rel}"


def pytest_command(
    python: str, targets: list[str], env: dict[str, str], timeout_s: float | None = None
) -> str:
    """One shell line: markers around ``python -m pytest`` on ``targets`` (test ids or paths).

    ``timeout -s KILL`` is a second line of defence behind the sandbox's session timeout: it kills the
    whole run (its own process group) even when the shell cannot be interrupted.
    """
    env_words = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    args = " ".join(shlex.quote(a) for a in [*PYTEST_ARGS, *targets])
    limit = f"timeout -s KILL {timeout_s:g} " if timeout_s else ""
    run = f"{limit}env {env_words} {shlex.quote(python)} -m pytest {args}"
    # The exit status is pytest's (137: killed by `timeout`), not the closing echo's.
    return f"echo {shlex.quote(START_TEST_OUTPUT)}; {run}; rc=$?; echo {shlex.quote(END_TEST_OUTPUT)}; (exit $rc)"


def extract_test_output(output: str) -> str:
    """The text between the markers (to the end if the run was killed before END)."""
    text = output.replace("\r\n", "\n")
    start = text.find(START_TEST_OUTPUT)
    if start >= 0:
        text = text[start + len(START_TEST_OUTPUT) :]
    end = text.find(END_TEST_OUTPUT)
    return text[:end] if end >= 0 else text


@cache
def _swesmith_parser():
    # Imported lazily: swesmith pulls in every language profile (seconds on a small machine).
    from swesmith.profiles.python import PythonProfile

    return PythonProfile().log_parser


def parse_status(section: str) -> dict[str, str]:
    """Per-test status from verbose pytest output: SWE-smith's parser plus ids with spaces."""
    status = dict(_swesmith_parser()(section))
    for line in section.split("\n"):
        spaced = _spaced_result(line)
        if spaced:
            status.setdefault(*spaced)
    # SWE-smith's parser reads "t.py::test_x[a" from such a line; drop those fragments.
    for frag in [k for k in status if "[" in k and not k.endswith("]")]:
        del status[frag]
    return status


def _spaced_result(line: str) -> tuple[str, str] | None:
    """``(id, status)`` of a verbose result line whose id contains whitespace, e.g. ``t.py::f[a b] PASSED``."""
    words = _PERCENT_RE.sub("", line.rstrip()).rsplit(None, 1)
    if len(words) != 2 or words[1] not in _STATUSES:
        return None
    test_id = words[0].strip()
    if "::" not in test_id or len(test_id.split()) < 2 or line[:1].isspace():
        return None
    return test_id, words[1]


def parse_report(output: str, duration_s: float = 0.0, timed_out: bool = False) -> TestReport:
    section = extract_test_output(output)
    return TestReport(
        status=parse_status(section),
        duration_s=duration_s,
        timed_out=timed_out,
        log_tail=section[-LOG_TAIL_CHARS:],
    )


def evaluate_report(report: TestReport, f2p: list[str], p2p: list[str]) -> Evaluation:
    """Judge a run as SWE-smith does: every FAIL_TO_PASS passes, every PASS_TO_PASS still passes."""
    return Evaluation(
        f2p_passed=report.count_passed(f2p),
        f2p_total=len(f2p),
        p2p_passed=report.count_passed(p2p),
        p2p_total=len(p2p),
        applied=True,
        error="test run timed out" if report.timed_out else None,
        duration_s=report.duration_s,
        tests={t: report.status.get(t, MISSING) for t in [*f2p, *p2p]},
    )


# ---------------------------------------------------------------- framings: how a task's tests are run and read


class OwnFraming:
    """This project's framing, for repositories it built itself: markers echoed around verbose pytest,
    parsed by :func:`parse_report`. A grading run (``targets=None``) runs the task's own tests."""

    kind = "hrm-spawn"

    def __init__(self, python: str, env: dict[str, str], grading_targets: list[str]):
        self.python, self.env, self.grading_targets = python, env, list(grading_targets)

    def command(self, repo_dir: str, targets: list[str] | None, timeout_s: float | None) -> str:
        run = pytest_command(
            self.python, self.grading_targets if targets is None else targets, self.env, timeout_s
        )
        return f"( cd {shlex.quote(repo_dir)} || exit 1; {run} )"

    def parse(self, output: str, duration_s: float, timed_out: bool) -> TestReport:
        return parse_report(output, duration_s, timed_out)


# swesmith's eval script traces itself (set -x); grading reads the text between these two trace lines.
PROFILE_START = f"+ : '{START_TEST_OUTPUT}'"
PROFILE_END = f"+ : '{END_TEST_OUTPUT}'"
_CONDA_STEP_RE = re.compile(r"^\s*(source\s+\S*activate\b.*|conda\s+activate\b.*)$")


class ProfileFraming:
    """A SWE-smith profile's own test command and log parser, framed as swesmith's eval script frames it.

    The grading run (``targets=None``) is ``profile.get_test_cmd(instance)``: what swesmith runs to grade a
    prediction. In a SWE-smith image the command runs as it is; on a locally built copy
    (``python`` given) the conda activation steps are dropped and ``pytest``/``python`` is this repository's
    venv interpreter with the checkout on PYTHONPATH (swesmith's images install the project instead).
    """

    kind = "swesmith-profile"

    def __init__(
        self,
        profile: Any,
        instance: dict[str, Any],
        python: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self.profile, self.instance, self.python, self.env = profile, instance, python, env or {}

    def test_command(self, targets: list[str] | None) -> str:
        if targets is None:
            command, _ = self.profile.get_test_cmd(self.instance)
        else:
            command = " ".join([self.profile.test_cmd, *(shlex.quote(t) for t in targets)])
        return self._localize(command) if self.python else command

    def _localize(self, command: str) -> str:
        steps = [s for s in re.split(r";|&&", command) if s.strip() and not _CONDA_STEP_RE.match(s)]
        env_words = " ".join(shlex.quote(f"{k}={v}") for k, v in self.env.items())
        out = []
        for step in steps:
            words = step.strip().split(None, 1)
            rest = words[1] if len(words) > 1 else ""
            if words[0] == "pytest":
                step = f"{shlex.quote(self.python or '')} -m pytest {rest}"
            elif words[0] in ("python", "python3"):
                step = f"{shlex.quote(self.python or '')} {rest}"
            out.append(f"env {env_words} {step.strip()}" if env_words else step.strip())
        return "; ".join(out)

    def command(self, repo_dir: str, targets: list[str] | None, timeout_s: float | None) -> str:
        script = "\n".join(
            [
                "exec 2>&1",  # the trace lines (stderr) stay in order with the test output
                "PS4='+ '",
                "set -uxo pipefail",
                f"cd {shlex.quote(repo_dir)}",
                f": '{START_TEST_OUTPUT}'",
                self.test_command(targets),
                f": '{END_TEST_OUTPUT}'",
            ]
        )
        limit = f"timeout -s KILL {timeout_s:g} " if timeout_s else ""
        return f"{limit}bash -c {shlex.quote(script)}"

    def parse(self, output: str, duration_s: float, timed_out: bool) -> TestReport:
        section = extract_profile_output(output)
        return TestReport(
            status=dict(self.profile.log_parser(section)),
            duration_s=duration_s,
            timed_out=timed_out,
            log_tail=section[-LOG_TAIL_CHARS:],
        )


def extract_profile_output(output: str) -> str:
    """The text between swesmith's traced markers, as ``swesmith.harness.grading.read_test_output`` cuts it
    (to the end when the run was killed before the end marker)."""
    text = output.replace("\r\n", "\n")
    start = text.find(PROFILE_START)
    if start < 0:
        return ""
    text = text[start + len(PROFILE_START) :]
    end = text.find(PROFILE_END)
    return text[:end] if end >= 0 else text


def swesmith_instance(task: Any) -> dict[str, Any]:
    """The row as swesmith's profile methods read it (a plain dict, its own field names)."""
    return {
        "instance_id": task.instance_id,
        "repo": task.repo,
        "patch": task.patch,
        "FAIL_TO_PASS": list(task.FAIL_TO_PASS),
        "PASS_TO_PASS": list(task.PASS_TO_PASS),
    }


def framing_for(
    task: Any, python: str, env: dict[str, str], repo: Any = None, local: bool = True
) -> OwnFraming | ProfileFraming:
    """How ``task``'s tests are run and read: its repository's SWE-smith profile when swesmith's registry
    has one (a built-in profile, or one registered for a local copy and recorded in ``repo``), else this
    project's own framing (repositories it built itself). ``local``: a built checkout, not a SWE-smith image."""
    from hrm_spawn.envs.swesmith_py import profile_for

    profile = profile_for(task.repo, repo)
    if profile is None:
        return OwnFraming(python, env, [*task.FAIL_TO_PASS, *task.PASS_TO_PASS])
    return ProfileFraming(profile, swesmith_instance(task), python if local else None, env if local else None)
