"""Problem statements made from a validation run: the failing tests and their short failure lines.

No model is involved: the statement says what a user would see (which tests fail and how), never
the bug's kind, file or patch.
"""

from __future__ import annotations

import re
from collections import Counter

# pytest's short summary (``-rfE``): "FAILED tests/t.py::test_x - AssertionError: assert 1 == 2".
_SUMMARY_RE = re.compile(r"^(?P<status>FAILED|ERROR) (?P<id>\S+::\S+?|\S+)(?: - (?P<message>.*))?\s*$")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{6,}")
MAX_TESTS_SHOWN = 8
MAX_MESSAGE_CHARS = 300


def failure_messages(output: str) -> dict[str, str]:
    """Test id -> first failure line, from pytest's ``-rfE`` short test summary."""
    messages: dict[str, str] = {}
    for line in output.splitlines():
        match = _SUMMARY_RE.match(line.rstrip())
        if match:
            messages.setdefault(match["id"], (match["message"] or "").strip())
    return messages


def _short(message: str) -> str:
    # Object addresses differ from run to run; the statement must not.
    message = _ADDRESS_RE.sub("0x...", " ".join(message.split()))
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."


def problem_statement(
    fail_to_pass: list[str], messages: dict[str, str], total_tests: int | None = None
) -> str:
    """A plain-text issue: how many tests fail, a few of them with their failure lines, the ask."""
    if not fail_to_pass:
        raise ValueError("a problem statement needs at least one failing test")
    count = len(fail_to_pass)
    of_total = f" of {total_tests}" if total_tests else ""
    noun = "test fails" if count == 1 else "tests fail"
    lines = [f"{count}{of_total} {noun} after a recent change to the library code.", ""]
    shown = fail_to_pass[:MAX_TESTS_SHOWN]
    lines.append(
        "Failing tests:" if len(shown) == count else f"Failing tests ({len(shown)} of {count} shown):"
    )
    for test_id in shown:
        message = _short(messages.get(test_id, ""))
        lines.append(f"- {test_id}" + (f": {message}" if message else ""))
    modules = sorted({t.split("::", 1)[0] for t in fail_to_pass})
    if len(modules) > 1:
        lines += ["", "Affected test modules: " + ", ".join(modules)]
    lines += [
        "",
        "Find the cause in the library code (not in the tests) and fix it, so that these tests pass "
        "and every other test keeps passing.",
    ]
    return "\n".join(lines)


# Failure kinds a policy may see: coarse classes of the exceptions in the statement's failure lines.
# They carry over between tasks (an UnboundLocalError points at reordered statements, a NameError at
# removed code) where the statement's words would only identify the task.
FAILURE_KINDS = (
    "AssertionError",
    "TypeError",
    "ValueError",
    "AttributeError",
    "NameError",
    "UnboundLocalError",
    "LookupError",
    "RuntimeError",
    "OtherError",
)
_LOOKUP = {"KeyError", "IndexError", "LookupError", "StopIteration"}
_EXCEPTION_RE = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Iteration))\b")


def failure_kind(message: str) -> str | None:
    """The class of the first exception a failure line names (None when it names none)."""
    match = _EXCEPTION_RE.search(message)
    if match is None:
        return "AssertionError" if message.lstrip().startswith("assert ") else None
    name = match[1]
    if name in FAILURE_KINDS:
        return name
    if name in _LOOKUP:
        return "LookupError"
    if name == "RecursionError":
        return "RuntimeError"
    return "OtherError"


def failure_kind_shares(statement: str | None) -> dict[str, float]:
    """Share of the statement's listed failures (``- test: message`` lines) in each failure kind.

    Statements written by people (SWE-bench style) list no such lines: every share is then 0, and
    a policy sees the same as for a task without a statement.
    """
    lines = [line[2:] for line in (statement or "").splitlines() if line.startswith("- ")]
    counts = Counter(failure_kind(line.partition(": ")[2]) for line in lines)
    return {k: counts[k] / len(lines) if lines else 0.0 for k in FAILURE_KINDS}
