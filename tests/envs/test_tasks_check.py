"""The loader refuses fields that would reach a shell as something else, and ``tasks check --apply``
dry-runs every patch on the built repository (issue 16, point 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.trainers.cli import main


def _row(task, **over: object) -> dict:
    return {**task.to_record(), **over}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _stale(patch: str) -> str:
    """``patch`` with its first context line changed: a diff made against another version of the file."""
    lines = patch.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith(" ") and i > 3)
    lines[first] = " # a line this file never had\n"
    return "".join(lines)


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(["tasks", "check", *argv])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("over", "field", "reason"),
    [
        ({"FAIL_TO_PASS": ["--junitxml=/tmp/x.xml"]}, "FAIL_TO_PASS", "starts with '-'"),
        ({"PASS_TO_PASS": ["-p", "tests/t.py::x"]}, "PASS_TO_PASS", "starts with '-'"),
        ({"base_commit": "HEAD; rm -rf ~"}, "base_commit", "is not a git commit"),
        ({"base_commit": "main"}, "base_commit", "is not a git commit"),
    ],
)
def test_malicious_fields_are_named(
    tmp_path: Path, fixture_task, capsys: pytest.CaptureFixture[str], over: dict, field: str, reason: str
) -> None:
    path = _write(tmp_path / "t.jsonl", [_row(fixture_task, instance_id="ok"), _row(fixture_task, **over)])
    code, lines = _check(capsys, str(path))
    assert code == 1
    assert lines[0].startswith(f"{path}:2: instance {fixture_task.instance_id}: field {field}: ")
    assert reason in lines[0]
    assert lines[-1] == "1 valid, 1 invalid"


def test_a_missing_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _check(capsys, str(tmp_path / "nope.jsonl"))
    assert code == 1
    assert lines == [f"{tmp_path / 'nope.jsonl'}: file not found", "no records read"]


def test_apply_reports_patches_that_do_not_apply(
    tmp_path: Path, fixture_repo: RepoEnv, fixture_task, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = _stale(fixture_task.patch)
    rows = [
        _row(fixture_task, instance_id="good"),
        _row(fixture_task, instance_id="stale", patch=stale),
        _row(fixture_task, instance_id="old-commit", base_commit="0" * 40),
        _row(fixture_task, instance_id="unbuilt", repo="swesmith/other__repo.12345678"),
        {"instance_id": "only-an-id", "repo": "swesmith/other__repo.12345678", "replay_only": True},
    ]
    path = _write(tmp_path / "t.jsonl", rows)
    code, lines = _check(capsys, str(path))
    assert code == 0 and lines == ["5 valid, 0 invalid"]  # without --apply the records are fine

    code, lines = _check(capsys, str(path), "--apply")
    assert code == 1
    assert lines[0].startswith(
        f"{path}:2: instance stale: field patch: does not apply to {fixture_repo.name}"
    )
    assert lines[1].startswith(f"{path}:3: instance old-commit: field base_commit: commit 0000000")
    assert lines[2].startswith(f"{path}:4: instance unbuilt: field repo: repository 'other__repo.12345678'")
    assert lines[3] == "2 valid, 3 invalid"

    code, lines = _check(capsys, str(path), "--apply", "--fail-fast")
    assert code == 1 and lines[-1] == "stopped at the first problem" and "instance stale" in lines[0]


def test_apply_leaves_the_checkout_untouched(
    tmp_path: Path, fixture_repo: RepoEnv, fixture_task, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    path = _write(tmp_path / "t.jsonl", [_row(fixture_task)])
    assert _check(capsys, str(path), "--apply") == (0, ["1 valid, 0 invalid"])
    status = subprocess.run(
        ["git", "-C", str(fixture_repo.checkout), "status", "--porcelain"], capture_output=True, text=True
    )
    assert status.stdout == ""


def test_apply_problems_are_listed_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A loader problem on line 2 used to be printed before an --apply problem on line 1."""
    patch = "diff --git a/calc/x.py b/calc/x.py\n--- a/calc/x.py\n+++ b/calc/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    row = {"patch": patch, "FAIL_TO_PASS": ["tests/test_x.py::test_a"], "PASS_TO_PASS": [], "image_name": ""}
    path = _write(
        tmp_path / "t.jsonl",
        [
            {"instance_id": "t1", "repo": "nobody__built.0.1", **row},
            {"instance_id": "t2", "repo": "nobody__built.0.1", **row, "base_commit": "zz"},
        ],
    )
    code, lines = _check(capsys, str(path), "--apply")
    assert code == 1
    assert lines[0].startswith(
        f"{path}:1: instance t1: field repo: repository 'nobody__built.0.1' is not built"
    )
    assert lines[1].startswith(f"{path}:2: instance t2: field base_commit:")
    assert lines[2] == "0 valid, 2 invalid"
